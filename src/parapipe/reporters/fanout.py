"""One reporter that hands every event to several: the terminal view plus the report writers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from parapipe.model import ImageResult, RunInfo, RunResult, StepResult
from parapipe.reporters.base import Reporter


class FanoutReporter(Reporter):
    """Calls each reporter in order. One that raises does not keep the others from hearing
    the event (a report that cannot be written must not lose the summary or the other
    reports); the first error is raised once all have been called."""

    def __init__(self, reporters: Sequence[Reporter]) -> None:
        self.reporters = tuple(reporters)

    def run_started(self, info: RunInfo) -> None:
        self._each(lambda r: r.run_started(info))

    def image_started(self, tag: str) -> None:
        self._each(lambda r: r.image_started(tag))

    def image_output(self, line: str) -> None:
        self._each(lambda r: r.image_output(line))

    def image_finished(self, result: ImageResult) -> None:
        self._each(lambda r: r.image_finished(result))

    def step_started(self, name: str) -> None:
        self._each(lambda r: r.step_started(name))

    def step_output(self, name: str, line: str) -> None:
        self._each(lambda r: r.step_output(name, line))

    def step_finished(self, result: StepResult) -> None:
        self._each(lambda r: r.step_finished(result))

    def run_finished(self, result: RunResult) -> None:
        self._each(lambda r: r.run_finished(result))

    def close(self) -> None:
        self._each(lambda r: r.close())

    def _each(self, call: Callable[[Reporter], None]) -> None:
        first: BaseException | None = None
        for reporter in self.reporters:
            try:
                call(reporter)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first
