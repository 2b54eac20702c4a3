"""`--no-deps` with needs that have outputs, on real containers: their outputs come from a split
workflow's hand-off, else the step cache, else the run stops before it starts anything."""

from __future__ import annotations

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

SPEC = f"""
    image: {{from: {BUSYBOX}}}
    steps:
      build:
        run: [mkdir -p dist, echo built-here > dist/app.txt]
        outputs: [dist/]
      test:
        run: [cat dist/app.txt]
        needs: [build]
"""


def test_without_outputs_to_receive_the_run_stops_before_it_starts(project: Project) -> None:
    project.write_spec(SPEC)
    result = project.run("run", "-f", "ci.yaml", "test", "--no-deps", "--output", "plain")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "parapipe: ci.yaml:8:3: step 'test' needs the outputs of 'build', which this run leaves out"
    ), line
    assert "Traceback" not in result.output
    assert project.runs() == []


def test_outputs_come_from_the_step_cache(project: Project) -> None:
    project.write_spec(SPEC)
    assert project.run("run", "-f", "ci.yaml", "build", "--output", "plain").exit_code == 0
    result = project.run("run", "-f", "ci.yaml", "test", "--no-deps", "--output", "plain")
    assert result.exit_code == 0, result.output
    run = project.last_run()
    log = (run / "test.log").read_text()
    assert "parapipe: the outputs of 'build' come from the step cache" in log
    assert "built-here" in log
    assert not (run / "build.log").exists()
    assert containers_labelled(run.name) == []


def test_a_split_workflows_hand_off_comes_before_the_step_cache(project: Project) -> None:
    project.write_spec(SPEC)
    assert project.run("run", "-f", "ci.yaml", "build", "--output", "plain").exit_code == 0
    # As `actions/download-artifact` leaves the artifact of the job that ran `build`.
    handed = project.root / ".parapipe/handoff/build/runs/20260101-000000.000-abcdef"
    (handed / "artifacts/build/dist").mkdir(parents=True)
    (handed / "artifacts/build/dist/app.txt").write_text("built-in-another-job\n")
    result = project.run("run", "-f", "ci.yaml", "test", "--no-deps", "--output", "plain")
    assert result.exit_code == 0, result.output
    log = (project.last_run() / "test.log").read_text()
    assert "come from the hand-off in" in log
    assert "built-in-another-job" in log
    assert "built-here" not in log
