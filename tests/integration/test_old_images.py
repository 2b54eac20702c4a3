"""Old pipeline images go, for real: edit after edit leaves at most `image.keep` of the
pipeline's images and no untagged one, on Docker and Podman; an image a container uses stays;
`parapipe cache prune --images` removes the rest on demand."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from parapipe.model import LABEL_PIPELINE
from tests.helpers.docker import BUSYBOX, docker_answers, remove_pipeline_images
from tests.helpers.podman import why_podman_cannot_run
from tests.helpers.project import Project

pytestmark = pytest.mark.skipif(not docker_answers(), reason="the Docker daemon does not answer")

SPEC = f"""\
image:
  from: {BUSYBOX}
  keep: {{keep}}
  setup: [cat data.txt, "! grep -q broken data.txt"]
steps:
  show: {{{{run: cat data.txt}}}}
"""


def pipeline_images(
    engine: str, project: Project, *, every: bool = False, sources: bool = False
) -> list[str]:
    """`REPOSITORY:TAG` of the pipeline's images (`<none>:<none>` for an untagged one); with
    `every`, the intermediate layers' images too; with `sources`, only its source stages
    (`parapipe-source/…`, kept beside them for the next edit's delta)."""
    argv = [engine, "images", "--no-trunc", "--filter", f"label={LABEL_PIPELINE}={project.name}"]
    listed = subprocess.run(
        [*argv, *(["-a"] if every else []), "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [
        reference
        for reference in listed.stdout.split()
        if ("parapipe-source/" in reference) == sources
    ]


def edit_and_run(project: Project, text: str, *options: str) -> None:
    (project.root / "data.txt").write_text(text + "\n")
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", *options)
    assert result.exit_code == 0, result.output


@pytest.fixture
def podman_ready(project: Project) -> Iterator[None]:
    why = why_podman_cannot_run()
    if why is not None:
        pytest.skip(why)
    yield
    every = subprocess.run(
        ["podman", "images", "-aq", "--filter", f"label={LABEL_PIPELINE}={project.name}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if every:
        subprocess.run(["podman", "rmi", "-f", *set(every)], capture_output=True, check=False)
    remove_pipeline_images(project.name, "podman")  # the source stages that were parents


def test_twenty_edits_leave_the_newest_three_images_and_no_untagged_one(project: Project) -> None:
    project.write_spec(SPEC.format(keep=3))
    for edit in range(20):
        edit_and_run(project, f"edit {edit}")
    images = pipeline_images("docker", project)
    assert len(images) == 3, images
    assert "<none>:<none>" not in images
    assert len(pipeline_images("docker", project, sources=True)) == 3
    newest = project.last_run() / "image.build.log"
    assert "parapipe: removed the old image" in newest.read_text()


def test_a_failed_builds_untagged_image_stays_until_a_build_passes(project: Project) -> None:
    project.write_spec(SPEC.format(keep=1))
    edit_and_run(project, "good")
    (project.root / "data.txt").write_text("broken\n")
    failed = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert failed.exit_code == 1, failed.output
    # The legacy builder keeps the last step that passed: the next attempt starts from it.
    assert "<none>:<none>" in pipeline_images("docker", project)
    edit_and_run(project, "fixed")
    assert pipeline_images("docker", project) == [f"parapipe/{project.name}:" + _tag(project)]


def test_an_image_a_container_uses_stays_until_prune_finds_it_free(project: Project) -> None:
    project.write_spec(SPEC.format(keep=1))
    edit_and_run(project, "first")
    [first] = pipeline_images("docker", project)
    holder = subprocess.run(
        ["docker", "run", "-d", "--rm", first, "sleep", "120"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        edit_and_run(project, "second")
        assert first in pipeline_images("docker", project)
        assert len(pipeline_images("docker", project)) == 2
    finally:
        subprocess.run(["docker", "rm", "-f", holder], capture_output=True, check=True)
    pruned = project.run("cache", "prune", "-f", "ci.yaml", "--images", "--engine", "docker")
    assert pruned.exit_code == 0, pruned.output
    assert f"removed 1 old image(s)\n  {first}" in pruned.stdout
    assert first not in pipeline_images("docker", project)
    # Its layers went with it: only the kept image's own chain is left.
    every = pipeline_images("docker", project, every=True)
    assert every.count("<none>:<none>") < len(every)


@pytest.mark.usefixtures("podman_ready")
def test_podman_keeps_the_newest_too_and_its_layers_go(project: Project) -> None:
    project.write_spec(SPEC.format(keep=2))
    for edit in range(4):
        edit_and_run(project, f"edit {edit}", "--engine", "podman")
    images = pipeline_images("podman", project)
    assert len(images) == 2, images
    assert "<none>:<none>" not in images
    assert len(pipeline_images("podman", project, sources=True)) == 2
    layers_of_two = len(pipeline_images("podman", project, every=True))
    pruned = project.run(
        "cache", "prune", "-f", "ci.yaml", "--images", "--keep", "1", "--engine", "podman"
    )
    assert pruned.exit_code == 0, pruned.output
    assert len(pipeline_images("podman", project)) == 1
    assert len(pipeline_images("podman", project, every=True)) < layers_of_two - 1


def _tag(project: Project) -> str:
    latest = (project.last_run() / "image.build.log").read_text()
    return latest.split(f"parapipe/{project.name}:", 1)[1].split()[0]
