"""A throwaway project holding a spec, and the CLI run on it as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Project:
    """A folder holding `ci.yaml`; not a git repository, so it is its own source and root."""

    root: Path
    name: str

    @property
    def spec(self) -> Path:
        return self.root / "ci.yaml"

    def write_spec(self, body: str) -> Path:
        self.spec.write_text(f"name: {self.name}\n" + textwrap.dedent(body))
        return self.spec

    def run(self, *args: str, timeout: float = 120) -> CliResult:
        completed = subprocess.run(
            [sys.executable, "-m", "parapipe", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "NO_COLOR": "1"},
        )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    def runs(self) -> list[Path]:
        folder = self.root / ".parapipe" / "runs"
        return sorted(folder.iterdir()) if folder.exists() else []

    def last_run(self) -> Path:
        return self.runs()[-1]


def start_run(project: Project, *options: str) -> subprocess.Popen[bytes]:
    """`parapipe run --no-cache` on the project's ci.yaml, in the background, output dropped."""
    return subprocess.Popen(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "--output", "plain", "--no-cache", *options],
        cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def pool_log(run: Path) -> str:
    """The run's journal of its pool of started containers; empty when it pooled none."""
    path = run / "pool.txt"
    return path.read_text() if path.exists() else ""
