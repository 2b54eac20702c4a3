"""The runner with the in-memory engine: steps left out by `when.changed`, and `--no-deps`."""

from __future__ import annotations

from pathlib import Path

import pytest

from parapipe.engine.fake import FakeEngine
from parapipe.errors import ExitCode
from parapipe.model import RunResult, Status, StepResult
from parapipe.reporters.base import Reporter
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.spec.load import load_pipeline

pytestmark = pytest.mark.anyio

SPEC = """\
name: fake
image: {from: busybox:latest}
steps:
  build: {run: make}
  docs: {run: make docs, when: {changed: [docs/**]}, needs: [build]}
  publish: {run: publish, needs: [docs]}
  test: {run: make test, needs: [build], when: {changed: [src/**, tests/**]}}
"""


class Events(Reporter):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[StepResult] = []

    def step_started(self, name: str) -> None:
        self.started.append(name)

    def step_finished(self, result: StepResult) -> None:
        self.finished.append(result)


async def run(
    tmp_path: Path,
    engine: FakeEngine,
    spec: str = SPEC,
    reporter: Reporter | None = None,
    **options: object,
) -> RunResult:
    path = tmp_path / "ci.yaml"
    path.write_text(spec)
    pipeline = load_pipeline(path)
    return await run_pipeline(
        pipeline,
        RunOptions(**options),  # type: ignore[arg-type]
        [reporter or Reporter()],
        engine=engine,
    )


async def test_a_step_whose_globs_match_no_change_is_unchanged_and_its_dependents_run(
    tmp_path: Path,
) -> None:
    engine = FakeEngine()
    events = Events()
    result = await run(tmp_path, engine, reporter=events, changed_files=frozenset({"src/a.py"}))
    assert result.steps["docs"].status is Status.UNCHANGED
    assert result.steps["docs"].reason == "no changed file matches docs/**"
    assert result.steps["publish"].status is Status.PASSED  # an unchanged need counts as passed
    assert result.steps["test"].status is Status.PASSED
    assert sorted(r.step for r in engine.runs) == ["build", "publish", "test"]
    assert "docs" not in events.started  # never reported as started: it did not start
    assert [r.status for r in events.finished if r.name == "docs"] == [Status.UNCHANGED]
    assert result.exit_code == ExitCode.OK


async def test_unknown_changes_run_every_step(tmp_path: Path) -> None:
    engine = FakeEngine()
    result = await run(tmp_path, engine, changed_files=None)
    assert {r.status for r in result.steps.values()} == {Status.PASSED}
    assert len(engine.runs) == 4


async def test_when_no_step_needs_to_run_the_image_is_not_even_built(tmp_path: Path) -> None:
    spec = SPEC.replace("  build: {run: make}", "  build: {run: make, when: {changed: [Makefile]}}")
    spec = spec.replace("  publish: {run: publish, needs: [docs]}", "")
    engine = FakeEngine()
    result = await run(tmp_path, engine, spec, changed_files=frozenset({"README.md"}))
    assert {r.status for r in result.steps.values()} == {Status.UNCHANGED}
    assert engine.builds == 0
    assert result.image is None
    assert result.exit_code == ExitCode.OK


async def test_no_deps_runs_exactly_the_named_steps(tmp_path: Path) -> None:
    engine = FakeEngine()
    result = await run(tmp_path, engine, steps=("publish", "test"), no_deps=True)
    assert sorted(result.steps) == ["publish", "test"]
    assert sorted(r.step for r in engine.runs) == ["publish", "test"]
    assert result.exit_code == ExitCode.OK


async def test_no_deps_keeps_the_order_between_named_steps(tmp_path: Path) -> None:
    engine = FakeEngine()
    await run(tmp_path, engine, steps=("publish", "docs"), no_deps=True, jobs=2)
    assert engine.events == [
        ("start", "docs"),
        ("end", "docs"),
        ("start", "publish"),
        ("end", "publish"),
    ]
