"""The ETA: the rest of the run played out with earlier runs' durations."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from parapipe.model import RunInfo, Status, StepResult
from parapipe.reporters.eta import estimate_remaining
from parapipe.reporters.live import LiveReporter

NEEDS = {"a": (), "b": (), "c": ("a",), "d": ("b", "c")}
USUAL = {"a": 10.0, "b": 4.0, "c": 5.0, "d": 2.0}


def test_with_room_for_all_the_longest_chain_decides() -> None:
    estimate = estimate_remaining(NEEDS, USUAL, done=(), running={}, jobs=4)
    assert estimate is not None
    assert estimate.seconds == 17.0  # a, c, d
    assert estimate.unknown == ()
    assert estimate.describe() == "about 17.0s left"


def test_one_job_at_a_time_adds_everything_up() -> None:
    estimate = estimate_remaining(NEEDS, USUAL, done=(), running={}, jobs=1)
    assert estimate is not None
    assert estimate.seconds == 21.0


def test_running_steps_count_what_they_have_left() -> None:
    estimate = estimate_remaining(NEEDS, USUAL, done=("b",), running={"a": 8.0}, jobs=2)
    assert estimate is not None
    assert estimate.seconds == 9.0  # 2 s more of a, then c (5) and d (2)
    overdue = estimate_remaining(NEEDS, USUAL, done=("a", "b", "c"), running={"d": 30.0}, jobs=2)
    assert overdue is not None
    assert overdue.seconds == 0.0


def test_steps_without_history_make_it_a_lower_bound_and_none_known_means_no_guess() -> None:
    estimate = estimate_remaining(NEEDS, {"a": 10.0}, done=(), running={}, jobs=4)
    assert estimate is not None
    assert estimate.seconds == 10.0
    assert estimate.unknown == ("b", "c", "d")
    assert estimate.describe() == "at least 10.0s left"
    assert estimate_remaining(NEEDS, {}, done=(), running={}, jobs=4) is None


def test_the_live_view_shows_the_eta_while_steps_run() -> None:
    now = [100.0]
    console = Console(file=io.StringIO(), width=100, height=25, force_terminal=True)
    reporter = LiveReporter(console, clock=lambda: now[0], durations=USUAL)
    reporter._run_over = True  # draw frames by hand, with no live refresh thread
    reporter.run_started(
        RunInfo(
            run_id="r",
            pipeline="p",
            spec_path=Path("ci.yaml"),
            engine="fake",
            engine_reason="test",
            steps=tuple(NEEDS),
            needs=NEEDS,
            jobs=4,
            run_dir=Path("/tmp/r"),
        )
    )
    reporter.step_started("a")
    reporter.step_started("b")
    now[0] = 104.0
    reporter.step_finished(StepResult(name="b", status=Status.PASSED, duration=4.0))
    text = render(reporter)
    assert text[-1] == "ETA: about 13.0s left (from earlier runs)"  # 6 s of a, c, d


def render(reporter: LiveReporter) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=100, height=25, color_system=None).print(reporter.render(frozen=True))
    return [line.rstrip() for line in out.getvalue().splitlines()]
