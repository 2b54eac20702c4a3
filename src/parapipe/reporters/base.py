"""The reporter interface: a subscriber to the run's events, with one optional method for each
event it shows. Reporters only read what the run publishes; they never decide anything."""

from __future__ import annotations

from collections.abc import Sequence

from parapipe.model import ImageResult, RunInfo, RunResult, StepResult
from parapipe.run.events import (
    ImageFinished,
    ImageOutput,
    ImageStarted,
    RunEvent,
    RunFinished,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
)


class Reporter:
    """Base with no-op methods. Called from the event loop thread; must not block."""

    def handle(self, event: RunEvent) -> None:
        """Hand `event` to its method; the events no reporter shows are dropped."""
        if isinstance(event, StepOutput):  # the most frequent, first
            self.step_output(event.name, event.line)
        elif isinstance(event, StepStarted):
            self.step_started(event.name)
        elif isinstance(event, StepFinished):
            self.step_finished(event.result)
        elif isinstance(event, ImageOutput):
            self.image_output(event.line)
        elif isinstance(event, ImageStarted):
            self.image_started(event.tag)
        elif isinstance(event, ImageFinished):
            self.image_finished(event.result)
        elif isinstance(event, RunStarted):
            self.run_started(event.info)
        elif isinstance(event, RunFinished):
            self.run_finished(event.result)

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


def close_all(reporters: Sequence[Reporter]) -> None:
    """Close each reporter, even after one fails to; then raise the first error."""
    first: Exception | None = None
    for reporter in reporters:
        try:
            reporter.close()
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first
