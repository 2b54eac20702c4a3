"""`parapipe watch` without containers: its request, what may trigger it, and the run control
that stops a run in progress (with the in-memory engine)."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from parapipe.cli.parser import build_parser
from parapipe.cli.requests import RunRequest, WatchRequest, request_from
from parapipe.cli.watch import describe_changes, is_candidate
from parapipe.engine.fake import FakeEngine, FakeStep
from parapipe.errors import ExitCode
from parapipe.model import Status
from parapipe.reporters.base import Reporter
from parapipe.run.control import RunControl
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.spec.load import load_pipeline


def test_watch_takes_the_options_of_run() -> None:
    argv = ["watch", "-f", "s.yaml", "-j", "1", "--keep-going", "--no-prewarm", "a", "b"]
    request = request_from(build_parser().parse_args(argv))
    assert request == WatchRequest(
        run=RunRequest(
            spec=Path("s.yaml"), steps=("a", "b"), jobs=1, keep_going=True, prewarm=False
        )
    )


@pytest.mark.parametrize(
    ("files", "line"),
    [
        (["a.py"], "1 file changed: a.py"),
        (["src/a.py", "README.md"], "2 files changed: src/a.py, README.md"),
        ([f"f{n}" for n in range(7)], "7 files changed: f0, f1, f2, f3, f4 and 2 more"),
    ],
)
def test_the_watch_line_names_the_changed_files(files: list[str], line: str) -> None:
    assert describe_changes(files) == line


@pytest.mark.parametrize(
    ("path", "candidate"),
    [
        ("/p/src/a.py", True),
        ("/p/.git/index", False),
        ("/p/.parapipe/runs/x/a.log", False),
        ("/p/junit.xml", False),  # a report the run writes
        ("/elsewhere/a.py", False),
    ],
)
def test_the_runs_own_writes_and_gits_folder_never_trigger(path: str, candidate: bool) -> None:
    written = [Path("/p/.parapipe"), Path("/p/junit.xml")]
    assert is_candidate(Path(path), Path("/p"), written) is candidate


@pytest.mark.anyio
async def test_a_control_stops_the_run_as_a_signal_would_but_without_one(tmp_path: Path) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text("name: fake\nimage: {from: busybox:latest}\nsteps:\n  a: {run: echo a}\n")
    engine = FakeEngine({"a": FakeStep(release=anyio.Event())})
    control = RunControl()

    async def stop_once_started() -> None:
        await engine.steps["a"].started.wait()
        control.interrupt()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stop_once_started)
        result = await run_pipeline(
            load_pipeline(spec), RunOptions(), [Reporter()], engine=engine, control=control
        )
    assert engine.steps["a"].cancelled
    assert result.steps["a"].status is Status.INTERRUPTED
    assert result.signal is None
    assert result.exit_code == ExitCode.STEP_FAILED  # a stopped run never passes


@pytest.mark.anyio
async def test_a_stop_asked_before_the_run_started_applies_as_it_starts(tmp_path: Path) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text("name: fake\nimage: {from: busybox:latest}\nsteps:\n  a: {run: echo a}\n")
    engine = FakeEngine()
    control = RunControl()
    control.interrupt(signal.SIGINT)
    result = await run_pipeline(
        load_pipeline(spec), RunOptions(), [Reporter()], engine=engine, control=control
    )
    assert engine.runs == []
    assert result.exit_code == 130
