"""The run's event stream: every subscriber hears every event, in order, even after one fails;
every reporter is closed, even after one fails to close."""

from __future__ import annotations

from pathlib import Path

import pytest

from parapipe.model import RunResult
from parapipe.reporters.base import Reporter, close_all
from parapipe.reporters.report_file import ReportError
from parapipe.run.events import EventStream, RunFinished
from tests.helpers.report_samples import drive, sample_run


class Recorder(Reporter):
    def __init__(self, log: list[str], name: str, fail_on: str = "") -> None:
        self.log, self.name, self.fail_on = log, name, fail_on

    def _note(self, event: str) -> None:
        self.log.append(f"{self.name}:{event}")
        if event == self.fail_on:
            raise ReportError(f"{self.name} cannot write")

    def step_finished(self, result: object) -> None:
        self._note("step_finished")

    def run_finished(self, result: RunResult) -> None:
        self._note("run_finished")

    def close(self) -> None:
        self._note("close")


def test_events_reach_every_reporter_in_order(tmp_path: Path) -> None:
    info, result = sample_run(tmp_path)
    log: list[str] = []
    drive([Recorder(log, "a"), Recorder(log, "b")], info, result)
    assert log[:2] == ["a:step_finished", "b:step_finished"]
    assert log[-4:] == ["a:run_finished", "b:run_finished", "a:close", "b:close"]


def test_a_failing_reporter_does_not_silence_the_others_and_its_error_comes_out(
    tmp_path: Path,
) -> None:
    _, result = sample_run(tmp_path)
    log: list[str] = []
    stream = EventStream(
        [Recorder(log, "a", fail_on="run_finished"), Recorder(log, "b", fail_on="run_finished")]
    )
    with pytest.raises(ReportError, match="a cannot write"):
        stream.publish(RunFinished(result=result))
    assert log == ["a:run_finished", "b:run_finished"]


def test_every_reporter_is_closed_and_the_first_error_comes_out() -> None:
    log: list[str] = []
    reporters = [Recorder(log, "a", fail_on="close"), Recorder(log, "b", fail_on="close")]
    with pytest.raises(ReportError, match="a cannot write"):
        close_all(reporters)
    assert log == ["a:close", "b:close"]
