"""`caches:` on real containers: a named volume that outlives the run, shared by the steps of
one pipeline that name it, labelled so it can be found, and removed by the tests."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.docker import BUSYBOX, remove_pipeline_images
from tests.helpers.project import Project

pytestmark = pytest.mark.docker


def volumes(label: str) -> list[str]:
    """The volumes with `label` (`name` or `name=value`), or every volume for ''."""
    where = ["--filter", f"label={label}"] if label else []
    listed = subprocess.run(
        ["docker", "volume", "ls", "-q", *where], capture_output=True, text=True, check=True
    )
    return sorted(listed.stdout.split())


@pytest.fixture
def pipelines() -> Iterator[list[str]]:
    """The names of the pipelines a test makes; their volumes are removed afterwards, and
    none may be left."""
    names: list[str] = []
    yield names
    for name in names:
        remove_pipeline_images(name)
        # By name too: a volume made without its labels would escape the label filter.
        prefix = f"parapipe-cache-{name}-"
        left = [v for v in volumes("") if v.startswith(prefix)]
        if left:
            subprocess.run(["docker", "volume", "rm", "-f", *left], capture_output=True, check=True)
        assert [v for v in volumes("") if v.startswith(prefix)] == []


def make_project(root: Path, pipelines: list[str]) -> Project:
    root.mkdir()
    project = Project(root=root, name=f"test-{uuid.uuid4().hex[:10]}")
    pipelines.append(project.name)
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          write:
            run: ['echo "$PARAPIPE_RUN_ID" >> /cache/runs']
            caches: {{shared: /cache}}
          read:
            run: ['cat /cache/runs']
            caches: {{shared: /cache}}
          other:
            run: ['ls /cache']
            caches: {{other: /cache}}
    """)
    return project


def run_id(project: Project) -> str:
    return project.last_run().name


def log_lines(project: Project, step: str) -> list[str]:
    """What the step printed in the last run, without parapipe's own lines."""
    text = (project.last_run() / f"{step}.log").read_text()
    return [line for line in text.splitlines() if not line.startswith(("$ ", "parapipe:"))]


def test_a_cache_persists_across_runs_for_every_step_naming_it(
    tmp_path: Path, pipelines: list[str]
) -> None:
    project = make_project(tmp_path / "one", pipelines)
    first = project.run("run", "-f", "ci.yaml", "write", "--output", "plain")
    assert first.exit_code == 0, first.output
    first_id = run_id(project)
    second = project.run("run", "-f", "ci.yaml", "read", "--output", "plain")
    assert second.exit_code == 0, second.output
    # Another step, in another run, reads what the first wrote.
    assert log_lines(project, "read") == [first_id]
    # The volume is labelled, so it can be found and pruned.
    shared = f"parapipe-cache-{project.name}-shared"
    assert shared in volumes("io.parapipe.cache=shared")  # other tests may have theirs
    labels = json.loads(
        subprocess.run(
            ["docker", "volume", "inspect", "--format", "{{json .Labels}}", shared],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert labels == {"io.parapipe.pipeline": project.name, "io.parapipe.cache": "shared"}
    # A cache of another name is another volume: it starts empty.
    third = project.run("run", "-f", "ci.yaml", "other", "--output", "plain")
    assert third.exit_code == 0, third.output
    assert log_lines(project, "other") == []


def test_steps_running_together_share_one_volume(tmp_path: Path, pipelines: list[str]) -> None:
    project = make_project(tmp_path / "one", pipelines)
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          a: {{run: 'echo a >> /cache/seen', caches: {{shared: /cache}}}}
          b: {{run: 'echo b >> /cache/seen', caches: {{shared: /cache}}}}
          c: {{run: 'echo c >> /cache/seen', caches: {{shared: /cache}}}}
          both: {{run: 'sort /cache/seen', caches: {{shared: /cache}}, needs: [a, b, c]}}
    """)
    done = project.run("run", "-f", "ci.yaml", "-j", "3", "--output", "plain")
    assert done.exit_code == 0, done.output
    assert log_lines(project, "both") == ["a", "b", "c"]
    assert volumes(f"io.parapipe.pipeline={project.name}") == [
        f"parapipe-cache-{project.name}-shared"
    ]


def test_caches_are_scoped_to_their_pipeline(tmp_path: Path, pipelines: list[str]) -> None:
    one = make_project(tmp_path / "one", pipelines)
    two = make_project(tmp_path / "two", pipelines)
    assert one.run("run", "-f", "ci.yaml", "write").exit_code == 0
    read = two.run("run", "-f", "ci.yaml", "read", "--output", "plain")
    # The other pipeline's `shared` is another volume, so there is nothing to read.
    assert read.exit_code == 1, read.output
    assert "No such file" in read.output


def test_cache_prune_volumes_removes_the_pipelines_volumes_only(
    tmp_path: Path, pipelines: list[str]
) -> None:
    one = make_project(tmp_path / "one", pipelines)
    two = make_project(tmp_path / "two", pipelines)
    for project in (one, two):
        assert project.run("run", "-f", "ci.yaml", "write", "other").exit_code == 0
    pruned = one.run("cache", "prune", "-f", "ci.yaml", "--volumes", "--engine", "docker")
    assert pruned.exit_code == 0, pruned.output
    removed = [f"parapipe-cache-{one.name}-other", f"parapipe-cache-{one.name}-shared"]
    assert pruned.stdout.split("\n", 1)[1].split() == [
        "removed",
        "2",
        "cache",
        "volume(s)",
        *removed,
    ]
    assert volumes(f"io.parapipe.pipeline={one.name}") == []
    assert len(volumes(f"io.parapipe.pipeline={two.name}")) == 2
    # The next run creates the cache again, empty.
    assert one.run("run", "-f", "ci.yaml", "read", "--output", "plain").exit_code == 1


def test_cache_prune_volumes_fails_in_one_line_for_a_volume_in_use(
    tmp_path: Path, pipelines: list[str]
) -> None:
    project = make_project(tmp_path / "one", pipelines)
    assert project.run("run", "-f", "ci.yaml", "write").exit_code == 0
    volume = f"parapipe-cache-{project.name}-shared"
    holder = subprocess.run(
        ["docker", "run", "-d", "--rm", "-v", f"{volume}:/cache", BUSYBOX, "sleep", "60"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        pruned = project.run("cache", "prune", "-f", "ci.yaml", "--volumes", "--engine", "docker")
    finally:
        subprocess.run(["docker", "rm", "-f", holder], capture_output=True, check=False)
    assert pruned.exit_code == 3, pruned.output
    (line,) = pruned.stderr.strip().splitlines()
    assert line.startswith("parapipe: docker: cannot remove every cache volume:"), line
    assert "in use" in line
