"""The live view groups a matrix step's instances under one heading row for the step."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from parapipe.model import RunInfo, Status, StepResult
from parapipe.reporters.live import LiveReporter

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
A1, A2, A3 = "test[A=1,PY=3.11]", "test[A=2,PY=3.11]", "test[A=3,PY=3.11]"
# A topological order may interleave the instances with other steps.
ORDER = ("lint", A1, "other", A2, A3, "report")
NEEDS = {
    "lint": (),
    A1: ("lint",),
    "other": (),
    A2: ("lint",),
    A3: ("lint",),
    "report": (A1, A2, A3),
}


def info(steps: tuple[str, ...] = ORDER, needs: dict[str, tuple[str, ...]] = NEEDS) -> RunInfo:
    return RunInfo(
        run_id="r1",
        pipeline="ci",
        spec_path=Path("ci.yaml"),
        engine="docker",
        engine_reason="test",
        steps=steps,
        needs=needs,
        jobs=4,
        run_dir=Path("/tmp/parapipe-test/r1"),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started(run: RunInfo | None = None) -> tuple[LiveReporter, Clock]:
    """A reporter that has seen `run` (by default ORDER's) start; frames are drawn by hand."""
    clock = Clock()
    reporter = LiveReporter(Console(file=io.StringIO(), width=100), clock=clock)
    reporter._run_over = True  # no live display: `render` is called by the test
    reporter.run_started(run or info())
    return reporter, clock


def frame(reporter: LiveReporter, *, width: int = 100, height: int = 25) -> list[str]:
    """The view as a terminal of that size shows it, without colour, right spaces trimmed."""
    reporter.console.size = (width, height)  # the view sizes itself by its own console
    out = io.StringIO()
    Console(file=out, width=width, height=height, force_terminal=True).print(
        reporter.render(frozen=True)
    )
    return [ANSI.sub("", line).rstrip() for line in out.getvalue().splitlines()]


def passed(name: str, seconds: float = 1.2) -> StepResult:
    return StepResult(name=name, status=Status.PASSED, exit_code=0, duration=seconds)


def failed(name: str) -> StepResult:
    return StepResult(name=name, status=Status.FAILED, exit_code=1, duration=0.5, reason="exit 1")


def test_instances_are_indented_under_one_row_for_their_step_where_the_first_one_is() -> None:
    reporter, clock = started()
    reporter.step_finished(passed("lint", 0.4))
    reporter.step_started(A1)
    reporter.step_started(A2)
    reporter.step_output(A2, "collected 12 items")
    clock.now += 1.2
    reporter.step_finished(passed(A1))
    clock.now += 0.8
    assert frame(reporter) == [
        "✓ lint            0.4s",
        "▸ test            2.0s 1/3 passed, 1 running, 1 waiting",
        "✓   A=1,PY=3.11   1.2s",
        "▸   A=2,PY=3.11   2.0s collected 12 items",
        "·   A=3,PY=3.11",
        "· other",
        "· report               after test",  # the matrix step, not each of its instances
    ]


def test_a_waiting_matrix_step_says_once_what_it_waits_for() -> None:
    reporter, _ = started()
    assert frame(reporter)[:5] == [
        "· lint",
        "· test                 after lint",
        "·   A=1,PY=3.11",
        "·   A=2,PY=3.11",
        "·   A=3,PY=3.11",
    ]


def test_the_step_row_shows_the_worst_of_its_instances() -> None:
    reporter, _ = started()
    reporter.step_finished(passed("lint"))
    reporter.step_started(A1)
    reporter.step_finished(passed(A2))
    assert frame(reporter)[1].startswith("▸ test")  # running outranks waiting and passed

    reporter.step_finished(failed(A3))
    lines = frame(reporter)
    # failed outranks running: the step has failed, whatever its other instances do
    assert re.fullmatch(r"✗ test +\d+\.\ds 1/3 passed, 1 failed, 1 running", lines[1])
    assert re.fullmatch(r"✗   A=3,PY=3\.11 +0\.5s exit 1", lines[4])

    reporter.step_finished(passed(A1))
    assert re.fullmatch(r"✗ test +\d+\.\ds 2/3 passed, 1 failed", frame(reporter)[1])


def test_the_step_row_passes_when_every_instance_passed_or_was_cached() -> None:
    reporter, clock = started(info(steps=(A1, A2), needs={A1: (), A2: ()}))
    reporter.step_started(A1)
    clock.now += 3.0
    reporter.step_finished(passed(A1, 3.0))
    reporter.step_finished(StepResult(name=A2, status=Status.CACHED, duration=2.0))
    lines = frame(reporter)
    # the step's wall time: from its first instance's start to its last one's end
    assert lines[0] == "✓ test            3.0s 2/2 passed"
    assert lines[2] == "✓   A=2,PY=3.11   2.0s"


def all_passed_but_report() -> LiveReporter:
    reporter, _ = started()
    for name in ("lint", A1, "other", A2, A3):
        reporter.step_finished(passed(name))
    return reporter


FOLDED = [
    "✓ lint     1.2s",
    "✓ test     1.2s 3/3 passed",
    "✓ other    1.2s",
    "· report",
]


def test_a_big_terminal_keeps_the_instances_of_a_matrix_step_that_passed() -> None:
    assert frame(all_passed_but_report(), width=100, height=25) == [
        "✓ lint            1.2s",
        "✓ test            1.2s 3/3 passed",
        "✓   A=1,PY=3.11   1.2s",
        "✓   A=2,PY=3.11   1.2s",
        "✓   A=3,PY=3.11   1.2s",
        "✓ other           1.2s",
        "· report",
    ]


def test_a_narrow_terminal_folds_a_matrix_step_whose_instances_all_passed() -> None:
    assert frame(all_passed_but_report(), width=79, height=25) == FOLDED


def test_a_short_terminal_folds_a_matrix_step_whose_instances_all_passed() -> None:
    # room for 6 lines (8 less the cursor's and a spare): 7 unfolded, 4 folded
    assert frame(all_passed_but_report(), width=100, height=8) == FOLDED


def test_a_failed_instance_stays_visible_under_its_step_on_a_short_narrow_terminal() -> None:
    steps = (*(f"step-{i:02d}" for i in range(30)), A1, A2, A3)
    reporter, _ = started(info(steps=steps, needs={name: () for name in steps}))
    for name in (*steps[:30], A1, A3):
        reporter.step_finished(passed(name))
    reporter.step_finished(failed(A2))
    lines = frame(reporter, width=60, height=12)
    assert lines[-3:] == [
        "✗ test            1.2s 2/3 passed, 1 failed",  # not folded: an instance failed
        "✗   A=2,PY=3.11   0.5s exit 1",
        "… 25 more: 25 passed",  # 23 steps and the 2 instances that passed
    ]
    assert len(lines) == 10


def test_a_folded_matrix_step_left_out_is_counted_by_its_instances() -> None:
    steps = (A1, A2, A3, *(f"step-{i:02d}" for i in range(10)))
    reporter, _ = started(info(steps=steps, needs={name: () for name in steps}))
    for name in steps[:3]:
        reporter.step_finished(passed(name))
    for name in steps[3:]:
        reporter.step_started(name)
    lines = frame(reporter, width=100, height=8)
    assert lines[-1] == "… 8 more: 5 running, 3 passed"
    assert not any(line.startswith(("✓ test", "✓   A=")) for line in lines)


def test_a_pipeline_without_a_matrix_is_drawn_as_before() -> None:
    run = info(steps=("lint", "unit", "docs"), needs={"lint": (), "unit": (), "docs": ("unit",)})
    reporter, clock = started(run)
    reporter.step_started("unit")
    reporter.step_output("unit", "running 3 tests")
    reporter.step_finished(passed("lint", 0.4))
    clock.now += 2.5
    # as the view drew them before it grouped matrix steps, on a narrow terminal too
    expected = [
        "✓ lint   0.4s",
        "▸ unit   2.5s running 3 tests",
        "· docs        after unit",
    ]
    assert frame(reporter) == expected
    assert frame(reporter, width=40, height=6) == expected
