"""The reporter interface: the runner calls these in order; every method is optional."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from parapipe.results import ImageResult, RunResult, StepResult


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    run_id: str
    pipeline: str
    spec_path: Path
    engine: str
    engine_reason: str  # why this engine was chosen, e.g. "docker answered first"
    steps: Sequence[str]  # the steps this run will run, in a topological order
    needs: dict[str, tuple[str, ...]]  # of those steps
    jobs: int
    run_dir: Path


class Reporter:
    """Base with no-op methods. Called from the event loop thread; must not block."""

    def run_started(self, info: RunInfo) -> None:
        pass

    def image_started(self, tag: str) -> None:
        pass

    def image_output(self, line: str) -> None:
        pass

    def image_finished(self, result: ImageResult) -> None:
        pass

    def step_started(self, name: str) -> None:
        pass

    def step_output(self, name: str, line: str) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        pass

    def run_finished(self, result: RunResult) -> None:
        pass

    def close(self) -> None:
        """Release the terminal; called once, however the run ended."""
