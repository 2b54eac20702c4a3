"""The runner with the in-memory engine: what it hands the engine and how outcomes map to exits."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from parapipe.engines.fake import FakeEngine, FakeStep
from parapipe.errors import ExitCode
from parapipe.reporters.base import Reporter
from parapipe.results import RunResult, Status
from parapipe.runner import RunOptions, run_pipeline
from parapipe.spec import load_pipeline

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
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "ci.yaml"
    path.write_text(SPEC)
    return path


async def run(spec: Path, engine: FakeEngine, **options: object) -> RunResult:
    pipeline = load_pipeline(spec)
    return await run_pipeline(pipeline, RunOptions(**options), Reporter(), engine=engine)  # type: ignore[arg-type]


async def test_every_step_runs_from_the_image_built_once(spec: Path) -> None:
    engine = FakeEngine()
    result = await run(spec, engine)
    assert result.exit_code == ExitCode.OK
    assert engine.builds == 1
    assert result.image is not None
    assert {r.image_id for r in engine.runs} == {result.image.image_id}
    run_b = next(r for r in engine.runs if r.step == "b")
    assert run_b.commands == ("echo b1", "echo b2")
    assert run_b.env == {"X": "1"}
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
