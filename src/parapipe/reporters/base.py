"""The reporter interface: the runner calls these in order; every method is optional."""

from __future__ import annotations

from parapipe.model import ImageResult, RunInfo, RunResult, StepResult


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
