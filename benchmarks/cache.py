"""Step-cache benchmark: a 20-step pipeline run cold (empty step cache, image already built),
then re-run unchanged (every step cached). Reports both wall times and how many containers
the re-run started (from `docker events`), as medians over --repeat rounds.

Usage: python benchmarks/cache.py [--repeat N] [--image IMAGE] [--markdown]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = 20
PARAPIPE = [sys.executable, "-m", "parapipe"]


def spec(image: str) -> str:
    """Four chains of five; each step writes its output file, so restoring outputs counts."""
    lines = ["name: parapipe-bench-cache", f"image: {{from: {image}}}", "steps:"]
    for i in range(STEPS):
        needs = f", needs: [s{i - 4}]" if i >= 4 else ""
        command = f"echo step {i}; sleep 0.2; echo {i} > out{i}.txt"
        lines.append(f"  s{i}: {{run: '{command}', outputs: [out{i}.txt]{needs}}}")
    return "\n".join(lines) + "\n"


def run(folder: Path, *extra: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [*PARAPIPE, "run", "-f", "ci.yaml", "-j", "4", "--output", "quiet", *extra],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"parapipe run failed:\n{done.stdout}{done.stderr}")
    run_id = sorted((folder / ".parapipe" / "runs").iterdir())[-1].name
    return elapsed, run_id


def containers_created(run_id: str, since: float) -> int:
    events = subprocess.run(
        ["docker", "events", "--since", str(int(since) - 1), "--until", str(int(time.time()) + 1),
         "--filter", "type=container", "--filter", "event=create",
         "--filter", f"label=io.parapipe.run={run_id}", "--format", "{{.ID}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return len(events.stdout.split())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--image", default="busybox:latest", help="local image (default busybox:latest)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    cold: list[float] = []
    warm: list[float] = []
    started_containers: list[int] = []
    for _ in range(args.repeat):
        folder = Path(tempfile.mkdtemp(prefix="parapipe-bench-cache-"))
        try:
            (folder / "ci.yaml").write_text(spec(args.image))
            run(folder, "--no-cache")  # builds the image once, so cold measures the steps
            shutil.rmtree(folder / ".parapipe" / "cache")
            cold.append(run(folder)[0])
            since = time.time()
            elapsed, run_id = run(folder)
            warm.append(elapsed)
            started_containers.append(containers_created(run_id, since))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    if args.markdown:
        command = f"python benchmarks/cache.py --repeat {args.repeat} --markdown"
        print(f"`{command}` (median wall seconds)\n")
        print("| 20-step pipeline, `-j 4` | wall s | containers started |\n| --- | ---: | ---: |")
        print(f"| cold: empty step cache, image already built | {cold_s:.2f} | {STEPS} |")
        print(f"| unchanged re-run: every step cached | {warm_s:.2f} | {max(started_containers)} |")
    else:
        print(f"cold {cold_s:.2f}s, cached re-run {warm_s:.2f}s, containers {started_containers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
