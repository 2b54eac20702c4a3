"""Services benchmark: what a PostgreSQL service beside a step costs.

Two steps run at the same time, each `true`: `plain` alone, `beside` with a PostgreSQL service
(`parapipe-seed/postgres:bookworm`, ready when `pg_isready` answers). Each round changes the
steps' env, so the step cache serves neither (the default configuration otherwise). Reports,
as medians over --repeat rounds: the time from the service's start to ready (the step log's
`ready after` line) and each step's duration, whose difference is the wall time a service adds
to a step.

Usage: python benchmarks/services.py [--repeat N] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PARAPIPE = [sys.executable, "-m", "parapipe"]
NAME = "parapipe-bench-services"


def spec(image: str, round_: int) -> str:
    return f"""\
name: {NAME}
image: {{from: busybox:latest}}
services:
  db:
    image: {image}
    ready: {{run: "pg_isready -h 127.0.0.1", interval: 100ms}}
steps:
  plain: {{run: "true", env: {{ROUND: "{round_}"}}}}
  beside: {{run: "true", env: {{ROUND: "{round_}"}}, services: [db]}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--image", default="parapipe-seed/postgres:bookworm")
    args = parser.parse_args()
    ready: list[float] = []
    durations: dict[str, list[float]] = {"plain": [], "beside": []}
    with tempfile.TemporaryDirectory(prefix="parapipe-bench-") as folder:
        root = Path(folder)
        try:
            for round_ in range(args.repeat):
                (root / "ci.yaml").write_text(spec(args.image, round_))
                done = subprocess.run(
                    [*PARAPIPE, "run", "-f", "ci.yaml", "--output", "quiet",
                     "--report", "report.json"],
                    cwd=root, capture_output=True, text=True, check=False,
                )  # fmt: skip
                if done.returncode != 0:
                    sys.exit(f"round {round_} failed:\n{done.stdout}{done.stderr}")
                report = json.loads((root / "report.json").read_text())
                for step in report["steps"]:
                    durations[step["name"]].append(step["duration"])
                run_dir = sorted((root / ".parapipe" / "runs").iterdir())[-1]
                said = re.search(r"ready after ([\d.]+)s", (run_dir / "beside.log").read_text())
                assert said is not None
                ready.append(float(said.group(1)))
        finally:
            images = subprocess.run(
                ["docker", "image", "ls", "-q", f"parapipe/{NAME}"],
                capture_output=True, text=True, check=False,
            ).stdout.split()  # fmt: skip
            if images:
                subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True)
    plain, beside = (statistics.median(durations[s]) for s in ("plain", "beside"))
    print(f"rounds: {args.repeat}")
    print(f"service start to ready: median {statistics.median(ready):.2f}s")
    print(f"step without a service: median {plain:.2f}s")
    print(f"step with the service:  median {beside:.2f}s (+{beside - plain:.2f}s)")


if __name__ == "__main__":
    main()
