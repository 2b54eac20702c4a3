"""Outputs handed between steps and the step cache, on real containers."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled
from tests.helpers.project import Project

pytestmark = pytest.mark.docker


def created_containers(run_id: str, since: int) -> int:
    events = subprocess.run(
        [
            "docker", "events", "--since", str(since), "--until", str(int(time.time()) + 1),
            "--filter", "type=container", "--filter", "event=create",
            "--filter", f"label=io.parapipe.run={run_id}", "--format", "{{json .}}",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return len(events.stdout.splitlines())


DIAMOND = f"""
    image: {{from: {BUSYBOX}}}
    steps:
      build:
        run: [mkdir -p dist/bin, echo app > dist/app.txt, 'printf "#!/bin/sh\\necho ran\\n" > dist/bin/run.sh', chmod +x dist/bin/run.sh]
        outputs: [dist/]
      left:
        run: [cat dist/app.txt, dist/bin/run.sh, echo left > left.txt]
        needs: [build]
        outputs: [left.txt]
      right:
        run: [cat dist/app.txt, echo right > right.txt]
        needs: [build]
        outputs: [right.txt]
      join:
        run: [cat left.txt right.txt, 'test ! -e dist || echo "dist""-is-here"']
        needs: [left, right]
"""


def test_outputs_flow_through_a_diamond(project: Project) -> None:
    project.write_spec(DIAMOND)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "--export", "exported")
    assert result.exit_code == 0, result.output
    run_dir = project.last_run()
    left = (run_dir / "left.log").read_text()
    assert "app" in left
    assert "ran" in left  # the executable bit survived the trip
    assert "app" in (run_dir / "right.log").read_text()
    join = (run_dir / "join.log").read_text()
    assert "left" in join
    assert "right" in join
    assert "dist-is-here" not in join  # only the direct needs' outputs are handed on
    assert (run_dir / "artifacts" / "build" / "dist" / "app.txt").read_text() == "app\n"
    exported = project.root / "exported"
    assert sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*.txt")) == [
        "dist/app.txt", "left.txt", "right.txt",
    ]  # fmt: skip
    assert containers_labelled(run_dir.name) == []


def test_an_unchanged_rerun_is_cached_whole_with_no_container(project: Project) -> None:
    project.write_spec(DIAMOND)
    assert project.run("run", "-f", "ci.yaml").exit_code == 0
    since = int(time.time()) - 1
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "--export", "again")
    assert result.exit_code == 0, result.output
    run_dir = project.last_run()
    assert result.stdout.count("cached") >= 4
    assert created_containers(run_dir.name, since) == 0
    assert "ran" in (run_dir / "left.log").read_text()  # the log came back from the cache
    assert (project.root / "again" / "left.txt").read_text() == "left\n"


def test_no_cache_runs_everything_again(project: Project) -> None:
    project.write_spec(DIAMOND)
    assert project.run("run", "-f", "ci.yaml").exit_code == 0
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "--no-cache")
    assert result.exit_code == 0
    assert "cached" not in result.stdout


def test_inputs_narrow_what_a_step_depends_on(project: Project) -> None:
    (project.root / "src").mkdir()
    (project.root / "docs").mkdir()
    (project.root / "src" / "code.txt").write_text("v1\n")
    (project.root / "docs" / "readme.txt").write_text("v1\n")
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          lint: {{run: cat src/code.txt, inputs: ["src/**"]}}
          docs: {{run: cat docs/readme.txt}}
    """)
    assert project.run("run", "-f", "ci.yaml").exit_code == 0
    (project.root / "docs" / "readme.txt").write_text("v2\n")
    second = project.run("run", "-f", "ci.yaml", "--report", "r.json")
    statuses = {
        s["name"]: s["status"] for s in json.loads((project.root / "r.json").read_text())["steps"]
    }
    assert second.exit_code == 0
    assert statuses == {"lint": "cached", "docs": "passed"}
    (project.root / "src" / "code.txt").write_text("v2\n")
    assert project.run("run", "-f", "ci.yaml", "--report", "r.json").exit_code == 0
    statuses = {
        s["name"]: s["status"] for s in json.loads((project.root / "r.json").read_text())["steps"]
    }
    assert statuses == {"lint": "passed", "docs": "passed"}  # docs depends on every file
    assert "v2" in (project.last_run() / "lint.log").read_text()


def test_a_step_with_cache_false_always_runs(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          deploy: {{run: echo deploying, cache: false}}
    """)
    assert project.run("run", "-f", "ci.yaml").exit_code == 0
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert "deploying" in (project.last_run() / "deploy.log").read_text()
    assert "cached" not in result.stdout


def test_a_missing_output_fails_the_step_naming_the_path(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          build: {{run: mkdir -p dist, outputs: [dist, wheel.whl]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 1, result.output
    assert "did not produce its output 'wheel.whl'" in result.stdout
    assert containers_labelled(project.last_run().name) == []


def test_an_output_that_links_outside_the_workdir_is_refused(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          sneaky: {{run: ln -s /etc leak, outputs: [leak]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 1, result.output
    assert "points outside the workdir" in result.stdout
    assert not (project.last_run() / "artifacts" / "sneaky" / "leak").exists()


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("/abs/path", "is absolute"),
        ("../up", "climbs out of the workdir"),
        ("a/../../b", "climbs out"),
    ],
)
def test_output_paths_that_leave_the_workdir_are_spec_errors(
    project: Project, output: str, message: str
) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          build: {{run: "true", outputs: ["{output}"]}}
    """)
    result = project.run("run", "-f", "ci.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith("ci.yaml:5:")
    assert message in result.stderr


def test_cache_prune_bounds_the_store(project: Project) -> None:
    project.write_spec(DIAMOND)
    assert project.run("run", "-f", "ci.yaml").exit_code == 0
    store = project.root / ".parapipe" / "cache" / "steps"
    assert len(list(store.iterdir())) == 4
    pruned = project.run("cache", "prune", "-f", "ci.yaml", "--max-size", "0")
    assert pruned.exit_code == 0, pruned.output
    assert "removed 4 step-cache entries" in pruned.stdout
    assert list(store.iterdir()) == []
