"""`image.caches` on Docker without BuildKit (`DOCKER_BUILDKIT=0` in the CLI's environment):
prepare and setup run in a container and are committed. The committed image has the config a
Dockerfile build gives, a failing command reads as on the Dockerfile path, and no container,
dangling image or half-made prepare stage is left, whether a command fails or the run is
interrupted. `test_image_prepare` runs the layering tests both ways."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.docker import BUSYBOX, prune_cache_mounts, remove_cache_volumes
from tests.helpers.project import Project, start_run

pytestmark = pytest.mark.docker

CONFIG_FIELDS = ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "Labels")


@pytest.fixture
def cached(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A project whose image has caches, built without BuildKit unless a test says otherwise;
    its cache volumes (and BuildKit cache mounts) go afterwards."""
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    (project.root / "deps.txt").write_text("dep-1\n")
    yield project
    prune_cache_mounts(project.name)
    remove_cache_volumes(project.name)


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def config(reference: str) -> dict[str, Any]:
    found = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", reference))
    return {field: found.get(field) for field in CONFIG_FIELDS}


def leftovers(project: Project) -> dict[str, list[str]]:
    """What a build of the project may not leave: containers, dangling images, a prepare stage
    whose commands did not all run."""
    label = f"label=io.parapipe.pipeline={project.name}"
    return {
        "containers": docker("ps", "-aq", "--filter", label).split(),
        "dangling": docker("images", "-q", "--filter", "dangling=true", "--filter", label).split(),
        "unprepared": [
            tag
            for tag in docker(
                "images", "--format", "{{.Tag}}", f"parapipe-prepare/{project.name}"
            ).split()
            if "-unprepared" in tag
        ],
    }


def test_a_committed_image_has_the_config_of_a_buildkit_build(
    cached: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A base with an ENTRYPOINT and no CMD: the container's command must not stay as its CMD.
    # Tagged and labelled with the pipeline, so that the project's sweep removes it.
    base = f"parapipe-test-base/{cached.name}:1"
    (cached.root / "base").mkdir()
    (cached.root / "base" / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nLABEL io.parapipe.pipeline={cached.name}\nENV BASE_VAR=1\n"
        'ENTRYPOINT ["/bin/sh", "-c", "exec \\"$@\\"", "entry"]\n'
    )
    docker("build", "-q", "-t", base, str(cached.root / "base"))
    cached.write_spec(f"""
        image:
          from: {base}
          exclude: [base/]
          env: {{APP_ENV: "a b"}}
          workdir: /srv/app
          prepare:
            files: [deps.txt]
            run: [cat deps.txt >> /cache/deps]
            env: {{ONLY_PREPARE: "1"}}
          setup: [touch built]
          caches: {{c: /cache}}
        steps:
          a: {{run: "true"}}
    """)
    monkeypatch.delenv("DOCKER_BUILDKIT")
    built = cached.run("image", "build", "-f", "ci.yaml", timeout=300)
    assert built.exit_code == 0, built.output
    tag = cached.run("image", "id", "-f", "ci.yaml").stdout.strip()
    with_buildkit = config(tag)
    # The same plan again, so the same tag and labels: the first build's images go first.
    source = docker(
        "images", "--format", "{{.Repository}}:{{.Tag}}", f"parapipe-source/{cached.name}"
    )
    docker("image", "rm", tag, *source.split())
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    built = cached.run("image", "build", "-f", "ci.yaml", timeout=300)
    assert built.exit_code == 0, built.output
    committed = config(tag)
    assert committed == with_buildkit
    assert committed["Entrypoint"] == ["/bin/sh", "-c", 'exec "$@"', "entry"]
    assert committed["Cmd"] is None
    assert not any(variable.startswith("ONLY_PREPARE=") for variable in committed["Env"])
    assert docker("images", "-q", f"parapipe-prepare/{cached.name}")  # the stage it reuses


@pytest.mark.parametrize("builder", ["buildkit", "commit"])
@pytest.mark.parametrize(
    ("prepare", "setup", "message"),
    [
        (
            '["true", "echo about-to-fail; exit 4"]',
            '["true"]',
            "prepare command 2 `echo about-to-fail; exit 4` failed with exit 4",
        ),
        (
            '["true"]',
            '["echo about-to-fail; exit 3"]',
            "setup command 1 `echo about-to-fail; exit 3` failed with exit 3",
        ),
    ],
    ids=["prepare", "setup"],
)
def test_a_failing_command_is_one_line_and_leaves_nothing(
    cached: Project,
    monkeypatch: pytest.MonkeyPatch,
    builder: str,
    prepare: str,
    setup: str,
    message: str,
) -> None:
    if builder == "buildkit":
        monkeypatch.delenv("DOCKER_BUILDKIT")
    cached.write_spec(f"""
        image:
          from: {BUSYBOX}
          prepare: {{files: [deps.txt], run: {prepare}}}
          setup: {setup}
          caches: {{c: /cache}}
        steps:
          a: {{run: "true"}}
    """)
    result = cached.run("run", "-f", "ci.yaml", "--output", "plain", timeout=300)
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("image: build of")]
    assert f": {message} (log: " in line
    assert "about-to-fail" in (cached.last_run() / "image.build.log").read_text()
    assert leftovers(cached) == {"containers": [], "dangling": [], "unprepared": []}


def test_an_interrupted_prepare_leaves_no_container(cached: Project) -> None:
    cached.write_spec(f"""
        image:
          from: {BUSYBOX}
          prepare: {{files: [deps.txt], run: [touch /cache/started, sleep 60]}}
          caches: {{c: /cache}}
        steps:
          a: {{run: "true"}}
    """)
    label = f"label=io.parapipe.pipeline={cached.name}"
    run = start_run(cached)
    try:
        deadline = time.monotonic() + 120
        while not docker("ps", "-q", "--filter", label) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert docker("ps", "-q", "--filter", label), "prepare's container never started"
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 130
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=30)
    assert leftovers(cached) == {"containers": [], "dangling": [], "unprepared": []}
    assert docker("images", "-q", f"parapipe-prepare/{cached.name}") == ""


def test_old_prepare_stages_are_pruned_with_the_images(cached: Project) -> None:
    cached.write_spec(f"""
        image:
          from: {BUSYBOX}
          prepare: {{files: [deps.txt], run: [cat deps.txt]}}
          caches: {{c: /cache}}
          keep: 1
        steps:
          a: {{run: "true"}}
    """)
    for deps in ("dep-1\n", "dep-2\n"):
        (cached.root / "deps.txt").write_text(deps)
        result = cached.run("run", "-f", "ci.yaml", "--output", "plain", timeout=300)
        assert result.exit_code == 0, result.output
    assert len(docker("images", "-q", f"parapipe-prepare/{cached.name}").split()) == 1
    assert leftovers(cached)["dangling"] == []
