"""Scheduling benchmarks: critical-path order against first-come order, and planning speed.

1. makespan: a chain of CHAIN `sleep 1` steps beside SHORT independent `sleep 0.3` steps that
   the spec lists first, run with `--jobs 2`. First-come order starts the short steps first and
   leaves the chain for last; critical-path order starts the chain at once. One untimed run
   records the steps' durations in `.parapipe/`, then `--schedule fifo` and
   `--schedule critical-path` runs alternate, and the medians are compared. Each run gives
   every step a new env value, so the step cache serves none (the default configuration, no
   `--no-cache`).
2. planning: a generated 10,000-step spec is loaded, validated, selected and planned
   (critical-path lengths) in-process, and `parapipe validate` is timed as a command.

Usage: python benchmarks/scheduling.py [--repeat N] [--image IMAGE] [--markdown]
Needs the image locally (scripts/seed-images seeds busybox:latest) and a running engine.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHAIN = 6
SHORT = 12
PLAN_STEPS = 10_000
# The parapipe this Python imports, so a venv's or a PYTHONPATH's copy is the one measured.
PARAPIPE = [sys.executable, "-m", "parapipe"]


def makespan_spec(image: str, run_value: str) -> str:
    """Every step has `run_value` in its env: a new one per run changes each step's cache key
    but not the image (whose source is an empty folder), so every step runs again without
    `--no-cache`, in parapipe's default configuration."""
    lines = ["name: parapipe-bench-schedule", f"image: {{from: {image}, source: src}}", "steps:"]
    env = f"env: {{RUN_VALUE: '{run_value}'}}"
    lines += [f"  short{i}: {{run: sleep 0.3, {env}}}" for i in range(SHORT)]
    for i in range(CHAIN):
        needs = f", needs: [chain{i - 1}]" if i else ""
        lines.append(f"  chain{i}: {{run: sleep 1{needs}, {env}}}")
    return "\n".join(lines) + "\n"


def plan_spec() -> str:
    lines = ["name: plan", "image: {from: busybox:latest}", "steps:"]
    for i in range(PLAN_STEPS):
        # A long chain through every step plus a jump back: 20,000 edges to plan.
        needs = f", needs: [s{i - 1}, s{i // 2 - 1}]" if i > 3 else ""
        lines.append(f"  s{i}: {{run: echo {i}{needs}}}")
    return "\n".join(lines) + "\n"


def timed_run(spec: Path, schedule: str) -> float:
    argv = [*PARAPIPE, "run", "-f", str(spec), "-j", "2", "--output", "quiet"]
    started = time.monotonic()
    done = subprocess.run([*argv, "--schedule", schedule], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"parapipe run --schedule {schedule} failed:\n{done.stdout}{done.stderr}")
    return elapsed


def makespans(image: str, repeat: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="parapipe-bench-schedule-"))
    try:
        spec = folder / "ci.yaml"
        (folder / "src").mkdir()
        runs = itertools.count()
        spec.write_text(makespan_spec(image, f"run-{next(runs)}"))
        timed_run(spec, "fifo")  # builds the image and records every step's duration
        times: dict[str, list[float]] = {"fifo": [], "critical-path": []}
        for index in range(repeat):
            order = ["fifo", "critical-path"] if index % 2 == 0 else ["critical-path", "fifo"]
            for schedule in order:
                spec.write_text(makespan_spec(image, f"run-{next(runs)}"))  # nothing cached
                times[schedule].append(timed_run(spec, schedule))
        return {schedule: statistics.median(values) for schedule, values in times.items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def planning() -> tuple[float, float]:
    from parapipe.graph import remaining_path_lengths, select_steps
    from parapipe.spec.load import load_pipeline

    folder = Path(tempfile.mkdtemp(prefix="parapipe-bench-plan-"))
    try:
        spec = folder / "ci.yaml"
        spec.write_text(plan_spec())
        started = time.monotonic()
        pipeline = load_pipeline(spec)
        names = select_steps(pipeline, ())
        remaining_path_lengths({n: pipeline.steps[n].needs for n in names}, {})
        in_process = time.monotonic() - started
        started = time.monotonic()
        subprocess.run([*PARAPIPE, "validate", "-f", str(spec)], check=True, capture_output=True)
        command = time.monotonic() - started
        return in_process, command
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per order (default 3)")
    parser.add_argument(
        "--image", default="busybox:latest", help="local image (default busybox:latest)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    spans = makespans(args.image, args.repeat)
    in_process, command = planning()
    ratio = spans["fifo"] / spans["critical-path"]
    if args.markdown:
        command_line = f"python benchmarks/scheduling.py --repeat {args.repeat} --markdown"
        print(f"`{command_line}` (median wall seconds)\n")
        print("| measure | value |\n| --- | ---: |")
        shape = f"chain of {CHAIN} x `sleep 1` beside {SHORT} x `sleep 0.3`, `-j 2`"
        print(f"| {shape}, fifo | {spans['fifo']:.2f} s |")
        print(f"| same, critical-path | {spans['critical-path']:.2f} s |")
        print(f"| fifo / critical-path | {ratio:.2f}x |")
        print(f"| load + validate + plan {PLAN_STEPS:,} steps, in-process | {in_process:.2f} s |")
        print(f"| `parapipe validate` on {PLAN_STEPS:,} steps, whole command | {command:.2f} s |")
    else:
        fifo, critical = spans["fifo"], spans["critical-path"]
        print(f"makespan fifo {fifo:.2f}s, critical-path {critical:.2f}s ({ratio:.2f}x)")
        print(f"{PLAN_STEPS} steps: plan {in_process:.2f}s in-process, validate {command:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
