"""The runner with the in-memory engine: what it hands the engine and how outcomes map to exits."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from parapipe.engine.fake import FakeEngine, FakeStep
from parapipe.errors import ExitCode
from parapipe.model import RunResult, Status
from parapipe.reporters.base import Reporter
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.spec.load import load_pipeline

pytestmark = pytest.mark.anyio

SPEC = """\
name: fake
image:
  from: busybox:latest
  setup: [echo setup]
steps:
  a: {run: echo a}
  b: {run: [echo b1, echo b2], needs: [a], env: {X: "1"}}
  c: {run: echo c, needs: [a]}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "ci.yaml"
    path.write_text(SPEC)
    return path


async def run(spec: Path, engine: FakeEngine, **options: object) -> RunResult:
    pipeline = load_pipeline(spec)
    return await run_pipeline(pipeline, RunOptions(**options), [Reporter()], engine=engine)  # type: ignore[arg-type]


async def test_every_step_runs_from_the_image_built_once(spec: Path) -> None:
    engine = FakeEngine()
    result = await run(spec, engine)
    assert result.exit_code == ExitCode.OK
    assert engine.builds == 1
    assert result.image is not None
    assert {r.image_id for r in engine.runs} == {result.image.image_id}
    run_b = next(r for r in engine.runs if r.step == "b")
    assert run_b.commands == ("echo b1", "echo b2")
    assert run_b.env["X"] == "1"
    assert run_b.env["PARAPIPE_ATTEMPT"] == "1"
    assert run_b.workdir == "/src"
    assert engine.swept == [result.run_id]


async def test_an_unchanged_second_run_reuses_the_image(spec: Path) -> None:
    engine = FakeEngine()
    first = await run(spec, engine)
    second = await run(spec, engine)
    assert engine.builds == 1
    assert second.image is not None
    assert second.image.reused
    assert first.image is not None
    assert first.image.tag == second.image.tag


async def test_a_failing_setup_skips_every_step_and_exits_1(spec: Path) -> None:
    engine = FakeEngine(setup_fails=True)
    result = await run(spec, engine)
    assert result.exit_code == ExitCode.STEP_FAILED
    assert result.image is not None
    assert result.image.status is Status.FAILED
    assert {r.status for r in result.steps.values()} == {Status.SKIPPED}
    assert engine.runs == []
    assert "setup command failed" in (result.run_dir / "image.build.log").read_text()


async def test_an_engine_error_in_a_step_exits_3(spec: Path) -> None:
    engine = FakeEngine({"a": FakeStep(engine_error="daemon went away")})
    result = await run(spec, engine)
    assert result.steps["a"].status is Status.ERROR
    assert "daemon went away" in result.steps["a"].reason
    assert result.exit_code == ExitCode.ENGINE


async def test_step_logs_hold_output_and_the_outcome(spec: Path) -> None:
    engine = FakeEngine({"c": FakeStep(exit_code=4, output=("first", "second"))})
    result = await run(spec, engine, keep_going=True)
    log = (result.run_dir / "c.log").read_text().splitlines()
    assert log[:2] == ["first", "second"]
    assert log[-1].startswith("parapipe: failed after")
    assert log[-1].endswith("exit code 4")
    assert result.steps["b"].status is Status.PASSED
    assert result.exit_code == ExitCode.STEP_FAILED


async def test_state_folder_ignores_itself(spec: Path) -> None:
    await run(spec, FakeEngine())
    assert (spec.parent / ".parapipe" / ".gitignore").read_text().splitlines()[-1] == "*"


async def test_a_named_step_runs_with_its_needs_only(spec: Path) -> None:
    engine = FakeEngine()
    result = await run(spec, engine, steps=("c",))
    assert sorted(result.steps) == ["a", "c"]
    assert sorted(r.step for r in engine.runs) == ["a", "c"]


async def test_fail_fast_cancels_a_running_sibling(spec: Path) -> None:
    never = anyio.Event()
    engine = FakeEngine({"b": FakeStep(release=never), "c": FakeStep(exit_code=1)})
    engine.steps["c"].release = engine.steps["b"].started
    with anyio.fail_after(5):
        result = await run(spec, engine, jobs=2)
    assert result.steps["b"].status is Status.CANCELLED
    assert engine.steps["b"].cancelled


def write_spec(tmp_path: Path, steps: str) -> Path:
    path = tmp_path / "ci.yaml"
    path.write_text(f"name: fake\nimage: {{from: busybox:latest}}\nsteps:\n{steps}")
    return path


async def test_a_flaky_step_passes_on_a_later_attempt_in_a_fresh_container(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, "  flaky: {run: x, retries: 2}\n  after: {run: y, needs: [flaky]}\n"
    )
    engine = FakeEngine({"flaky": FakeStep(exit_codes_by_attempt=(1, 0))})
    result = await run(spec, engine)
    flaky = result.steps["flaky"]
    assert flaky.status is Status.PASSED
    assert flaky.reason == "passed on attempt 2/3"
    assert [a.status for a in flaky.attempts] == [Status.FAILED, Status.PASSED]
    assert [r.attempt for r in engine.runs if r.step == "flaky"] == [1, 2]
    assert result.steps["after"].status is Status.PASSED
    log = (result.run_dir / "flaky.log").read_text()
    assert "parapipe: attempt 1/3" in log
    assert "parapipe: attempt 2/3" in log


async def test_retry_on_limits_which_exit_codes_are_retried(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "  a: {run: x, retries: 3, retry_on: [75]}\n")
    engine = FakeEngine({"a": FakeStep(exit_codes_by_attempt=(75, 2, 0))})
    result = await run(spec, engine)
    assert result.steps["a"].status is Status.FAILED
    assert result.steps["a"].reason == "exit code 2 on attempt 2/4"
    assert result.exit_code == ExitCode.STEP_FAILED


async def test_a_timeout_stops_the_step_and_counts_as_a_failure(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "  hangs: {run: x, timeout: 50ms}\n")
    engine = FakeEngine({"hangs": FakeStep(release=anyio.Event())})
    with anyio.fail_after(5):
        result = await run(spec, engine)
    assert result.steps["hangs"].status is Status.TIMED_OUT
    assert result.steps["hangs"].reason == "timed out after 0.05s"
    assert engine.steps["hangs"].cancelled
    assert result.exit_code == ExitCode.STEP_FAILED


async def test_timed_out_attempts_are_retried_unless_retry_on_leaves_them_out(
    tmp_path: Path,
) -> None:
    spec = write_spec(
        tmp_path,
        "  a: {run: x, timeout: 50ms, retries: 1}\n"
        "  b: {run: x, timeout: 50ms, retries: 1, retry_on: [1]}\n",
    )
    engine = FakeEngine(
        {"a": FakeStep(release=anyio.Event()), "b": FakeStep(release=anyio.Event())}
    )
    with anyio.fail_after(5):
        result = await run(spec, engine, keep_going=True)
    assert len(result.steps["a"].attempts) == 2
    assert len(result.steps["b"].attempts) == 1


async def test_an_allowed_failure_passes_the_run_but_not_its_dependents(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        "  optional: {run: x, allow_failure: true}\n"
        "  after: {run: y, needs: [optional]}\n"
        "  other: {run: z}\n",
    )
    engine = FakeEngine({"optional": FakeStep(exit_code=1)})
    result = await run(spec, engine, jobs=1)
    assert result.steps["optional"].status is Status.ALLOWED_FAILURE
    assert result.steps["after"].status is Status.SKIPPED
    assert result.steps["after"].reason == "needs 'optional', which failed (allowed)"
    assert result.steps["other"].status is Status.PASSED  # no fail-fast for an allowed failure
    assert result.exit_code == ExitCode.OK


async def test_engine_errors_are_not_retried(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "  a: {run: x, retries: 3}\n")
    engine = FakeEngine({"a": FakeStep(engine_error="socket gone")})
    result = await run(spec, engine)
    assert result.steps["a"].status is Status.ERROR
    assert len(result.steps["a"].attempts) == 1
    assert result.exit_code == ExitCode.ENGINE
