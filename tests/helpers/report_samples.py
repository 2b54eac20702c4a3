"""A finished run with a step in every final status, its logs on disk, for the report tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from parapipe.model import AttemptResult, ImageResult, RunInfo, RunResult, Status, StepResult
from parapipe.reporters.base import Reporter, close_all
from parapipe.run.events import (
    EventStream,
    ImageFinished,
    ImageOutput,
    ImageStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepOutput,
    StepStarted,
)

T0 = 1_790_000_000.0  # the run's start, on time.time()'s clock


def attempt(number: int, status: Status, start: float, duration: float, code: int) -> AttemptResult:
    return AttemptResult(
        number=number, status=status, exit_code=code, started_at=T0 + start, duration=duration
    )


def sample_run(tmp_path: Path) -> tuple[RunInfo, RunResult]:
    """build -> (lint, unit, flaky) -> package; docs unchanged; unit fails with a location."""
    run_dir = tmp_path / ".parapipe" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("x = 1\n")
    unit_log = run_dir / "unit.log"
    unit_log.write_text(
        "$ pytest -q\n"
        "\x1b[31mFAILED\x1b[0m tests/test_app.py::test_x\n"
        "/usr/lib/python3/site-packages/lib.py:10: in helper\n"
        "src/app.py:1: AssertionError: x is 1 & <not> 2\n"
        "bell \x07 and nul \x00 kept out of XML\n"
        "parapipe: exit 1\n"
    )
    flaky_log = run_dir / "flaky.log"
    flaky_log.write_text("parapipe: attempt 1/2\nboom\nparapipe: attempt 2/2\nok\n")
    info = RunInfo(
        run_id="r1",
        pipeline="ci",
        spec_path=tmp_path / "ci.yaml",
        engine="docker",
        engine_reason="docker answered first",
        steps=("build", "docs", "lint", "unit", "flaky", "package"),
        needs={
            "build": (),
            "docs": (),
            "lint": ("build",),
            "unit": ("build",),
            "flaky": ("build",),
            "package": ("lint", "unit", "flaky"),
        },
        jobs=3,
        run_dir=run_dir,
    )
    steps = {
        "build": StepResult(
            name="build",
            status=Status.PASSED,
            exit_code=0,
            started_at=T0 + 2.0,
            duration=3.0,
            attempts=(attempt(1, Status.PASSED, 2.0, 3.0, 0),),
        ),
        "docs": StepResult(
            name="docs", status=Status.UNCHANGED, reason="no changed file matches docs/**"
        ),
        "lint": StepResult(
            name="lint",
            status=Status.ALLOWED_FAILURE,
            exit_code=1,
            started_at=T0 + 5.0,
            duration=1.0,
            reason="exit code 1",
            attempts=(attempt(1, Status.FAILED, 5.0, 1.0, 1),),
        ),
        "unit": StepResult(
            name="unit",
            status=Status.FAILED,
            exit_code=1,
            started_at=T0 + 5.0,
            duration=4.0,
            log_path=unit_log,
            reason="exit code 1",
            attempts=(attempt(1, Status.FAILED, 5.0, 4.0, 1),),
        ),
        "flaky": StepResult(
            name="flaky",
            status=Status.PASSED,
            exit_code=0,
            started_at=T0 + 5.0,
            duration=3.0,
            log_path=flaky_log,
            reason="passed on attempt 2/2",
            attempts=(
                attempt(1, Status.FAILED, 5.0, 1.0, 1),
                attempt(2, Status.PASSED, 6.5, 2.0, 0),
            ),
            max_attempts=2,
        ),
        "package": StepResult(
            name="package", status=Status.SKIPPED, reason="needs 'unit', which failed"
        ),
    }
    result = RunResult(
        run_id="r1",
        pipeline="ci",
        engine="docker",
        run_dir=run_dir,
        started_at=T0,
        duration=10.0,
        image=ImageResult(
            tag="parapipe/ci:abc",
            status=Status.PASSED,
            image_id="sha256:" + "1" * 64,
            duration=2.0,
            log_path=run_dir / "image.build.log",
        ),
        steps=steps,
    )
    return info, result


def drive(reporters: Reporter | Sequence[Reporter], info: RunInfo, result: RunResult) -> None:
    """The events a run publishes, in order, as the runner publishes them; then the close."""
    reporters = [reporters] if isinstance(reporters, Reporter) else list(reporters)
    publish = EventStream(reporters).publish
    publish(RunStarted(info=info))
    if result.image is not None:
        publish(ImageStarted(tag=result.image.tag))
        publish(ImageOutput(line="Step 1/1 : FROM busybox"))
        publish(ImageFinished(result=result.image))
    for name in info.steps:
        step = result.steps[name]
        if step.started_at is not None:
            publish(StepStarted(name=name))
            if step.log_path is not None:
                for line in step.log_path.read_text().splitlines():
                    publish(StepOutput(name=name, line=line))
        publish(StepFinished(result=step))
    publish(RunFinished(result=result))
    close_all(reporters)
