"""Shared fixtures: a throwaway project with a spec, and the CLI run as users run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUSYBOX = "busybox:latest"


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def image_present(ref: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False)
    return probe.returncode == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("docker") for item in items):
        return
    if not docker_answers():
        reason = "no Docker daemon answers (run scripts/setup, which starts one)"
    elif not image_present(BUSYBOX):
        reason = f"{BUSYBOX} is not seeded (run scripts/seed-images)"
    else:
        return
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.skip(reason=reason))


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


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield Project(root=tmp_path, name=name)
    remove_pipeline_images(name)


def remove_pipeline_images(pipeline: str) -> None:
    """Images are the product of a run and are meant to be reused; the tests' own are not."""
    if shutil.which("docker") is None:
        return
    listed = subprocess.run(
        ["docker", "image", "ls", "-q", f"parapipe/{pipeline}"],
        capture_output=True,
        text=True,
        check=False,
    )
    ids = sorted(set(listed.stdout.split()))
    if ids:
        subprocess.run(["docker", "image", "rm", "-f", *ids], capture_output=True, check=False)
