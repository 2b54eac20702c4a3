"""`image.prepare` and `image.caches` on real containers: a source edit reuses the prepare layer,
an edit to a prepare file redoes it with the cache still there, and the cache's content never
lands in the image. On Docker both ways: BuildKit's cache mounts (through Debian's client), and
with `DOCKER_BUILDKIT=0` the legacy builder with prepare and setup run in a container and
committed, the caches mounted as volumes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers.docker import BUSYBOX, prune_cache_mounts, remove_cache_volumes
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

# The prepare layer records a random id (so a re-run of prepare shows as a new id) and what the
# cache held before it ran, then adds deps.txt to the cache.
SPEC = f"""
    image:
      from: {BUSYBOX}
      prepare:
        files: [deps.txt]
        run:
          - "cat /proc/sys/kernel/random/uuid > /prepared-id; : MARKER"
          - cat /cache/seen > /seen-before 2>/dev/null || true
          - cat deps.txt >> /cache/seen
      setup: [cat app.txt > /app-at-setup]
      caches: {{c: /cache}}
    steps:
      show:
        run:
          - 'echo "id=$(cat /prepared-id)"'
          - 'echo "before=$(cat /seen-before | tr "\\n" ,)"'
          - 'echo "app=$(cat /app-at-setup)"'
          - test ! -e /cache/seen
"""


@pytest.fixture(params=["buildkit", "commit"])
def builder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the image is built: with BuildKit's cache mounts where a client answers with BuildKit
    (parapipe probes in its own process, which the CLI runs), or, with `DOCKER_BUILDKIT=0` in
    the CLI's environment, by running prepare and setup in a container and committing it."""
    if request.param == "commit":
        monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    else:
        monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    return str(request.param)


@pytest.fixture
def layered(project: Project, builder: str) -> Iterator[Project]:
    (project.root / "deps.txt").write_text("dep-1\n")
    (project.root / "app.txt").write_text("app-1\n")
    # The marker names the test's BuildKit cache mount, which is described by the command that
    # first used it.
    project.write_spec(SPEC.replace("MARKER", project.name))
    yield project
    prune_cache_mounts(project.name)
    remove_cache_volumes(project.name)


def shown(project: Project) -> dict[str, str]:
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", timeout=300)
    assert result.exit_code == 0, result.output
    log = (project.last_run() / "show.log").read_text().splitlines()
    return dict(line.split("=", 1) for line in log if "=" in line and not line.startswith("$"))


def image_tags(project: Project) -> list[str]:
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Tag}}", f"parapipe/{project.name}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(listed.stdout.split())


def test_a_source_edit_reuses_prepare_and_redoes_setup(layered: Project, builder: str) -> None:
    first = shown(layered)
    assert first["app"] == "app-1"
    # The log says which way the image was built (and so that this test built it that way).
    head = (layered.last_run() / "image.build.log").read_text().splitlines()[:5]
    committed = "image.caches are mounted by running prepare and setup in a container"
    assert any(committed in line for line in head) == (builder == "commit"), head
    (layered.root / "app.txt").write_text("app-2\n")
    second = shown(layered)
    assert second["app"] == "app-2"  # setup saw the new source
    assert second["id"] == first["id"]  # prepare did not run again
    assert len(image_tags(layered)) == 2  # a new image, tagged by its content


def test_a_prepare_file_edit_redoes_prepare_with_the_cache_kept(layered: Project) -> None:
    first = shown(layered)
    assert first["before"] == ""
    (layered.root / "deps.txt").write_text("dep-2\n")
    second = shown(layered)
    assert second["id"] != first["id"]  # prepare ran again
    assert second["before"] == "dep-1,"  # and found what its first run left in the cache


def test_the_cache_content_is_not_in_the_image(layered: Project) -> None:
    shown(layered)
    (tag,) = image_tags(layered)
    listed = subprocess.run(
        ["docker", "run", "--rm", f"parapipe/{layered.name}:{tag}", "ls", "-A", "/cache"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.stdout == ""  # an empty mount point at most, never the cache's files


def test_a_prepare_glob_that_matches_nothing_is_a_located_usage_error(project: Project) -> None:
    (project.root / "deps.txt").write_text("dep-1\n")
    project.write_spec(f"""
        image:
          from: {BUSYBOX}
          prepare:
            files: [deps.txt, "requirements*.txt"]
            run: ["true"]
        steps:
          a: {{run: "true"}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "ci.yaml:6:23: 'image.prepare.files' glob 'requirements*.txt' matches no file of the"
        f" image source {project.root} (git-ignored and excluded files are not part of it)"
    ]
    assert not project.runs()  # nothing was started


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            "prepare: {files: [deps.txt]}",
            "ci.yaml:5:3: 'image.prepare' needs 'run': the commands that install the dependencies",
        ),
        (
            "caches: {pip: root/.cache/pip}",
            "ci.yaml:5:17: the path of cache 'pip' must be absolute, not 'root/.cache/pip'",
        ),
        (
            "prepare: {files: [deps.txt], run: [x], envs: {}}",
            "ci.yaml:5:42: unknown key 'envs' in 'image.prepare' (did you mean 'env'?)",
        ),
    ],
)
def test_bad_prepare_or_caches_are_located_usage_errors(
    project: Project, image: str, message: str
) -> None:
    (project.root / "deps.txt").write_text("dep-1\n")
    project.write_spec(f"""
        image:
          from: {BUSYBOX}
          {image}
        steps:
          a: {{run: "true"}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [message]
