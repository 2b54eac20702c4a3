"""Podman for real: an image the Docker engine built, moved as OCI (`docker save | podman load`),
runs the same steps under `--engine podman` with the same results; and the Podman fixes (image
ids, the ulimit hint) against Debian's podman."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from parapipe.engine.api import StepRun
from parapipe.engine.docker.argv import normalized_image_id
from parapipe.engine.docker.engine import PodmanEngine
from parapipe.engine.docker.podman_setup import fix_hint
from parapipe.errors import EngineError
from parapipe.model import LABEL_RUN
from tests.helpers.docker import BUSYBOX, docker_answers, remove_pipeline_images
from tests.helpers.podman import why_podman_cannot_run
from tests.helpers.project import Project


@pytest.fixture
def podman_ready() -> None:
    """Skip where podman cannot start a container at all; fail where it was not set up."""
    if not docker_answers():
        pytest.skip("no Docker daemon answers: the image to move comes from the Docker engine")
    why = why_podman_cannot_run()
    if why is not None:
        pytest.skip(why)


needs_podman = pytest.mark.usefixtures("podman_ready")


def podman(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["podman", *args], input=stdin, capture_output=True, check=False)


def move_to_podman(ref: str) -> None:
    """`docker save REF | podman load`: the OCI promise, nothing parapipe-specific."""
    saved = subprocess.run(["docker", "save", ref], capture_output=True, check=True)
    loaded = podman("load", stdin=saved.stdout)
    assert loaded.returncode == 0, loaded.stderr.decode()


@pytest.fixture
def podman_images(project: Project) -> Iterator[list[str]]:
    """Images the test adds to Podman's storage, and any the project's runs built there, removed
    afterwards."""
    added: list[str] = []
    yield added
    built = podman("image", "ls", "-q", f"parapipe/{project.name}").stdout.decode().split()
    if added or built:
        podman("image", "rm", "-f", *added, *sorted(set(built)))
    remove_pipeline_images(project.name, "podman")  # its source stages too


def step_logs(run_dir: Path) -> dict[str, list[str]]:
    """Each step's log without the closing line, which holds a duration."""
    return {
        log.stem: log.read_text().splitlines()[:-1]
        for log in sorted(run_dir.glob("*.log"))
        if log.name != "image.build.log"
    }


@pytest.mark.docker
@needs_podman
def test_an_image_built_by_docker_runs_the_same_under_podman(
    project: Project, podman_images: list[str]
) -> None:
    (project.root / "data.txt").write_text("moved\n")
    project.write_spec(f"""
        image:
          from: {BUSYBOX}
          env: {{STAGE: built-by-docker}}
          setup: [echo "$STAGE" > /stage]
        steps:
          read: {{run: [cat /stage, cat data.txt]}}
          fail: {{run: [echo failing, exit 5]}}
          after: {{run: echo after, needs: [read]}}
    """)
    by_docker = project.run("run", "-f", "ci.yaml", "--engine", "docker", "--keep-going")
    assert by_docker.exit_code == 1, by_docker.output
    docker_run = project.last_run()
    tag = re.search(r"built (parapipe/\S+:\w+)", by_docker.stdout)
    assert tag is not None, by_docker.stdout

    # The same base as Docker's (same id), and the pipeline image, moved as OCI archives.
    move_to_podman(BUSYBOX)
    move_to_podman(tag[1])
    podman_images.append(tag[1])

    by_podman = project.run(
        "run", "-f", "ci.yaml", "--engine", "podman", "--keep-going", "--no-cache"
    )
    assert by_podman.exit_code == 1, by_podman.output
    podman_run = project.last_run()
    # Podman found the moved image under the same content tag and built nothing.
    assert f"reused {tag[1]} (nothing to build)" in by_podman.stdout, by_podman.stdout
    assert step_logs(podman_run) == step_logs(docker_run)
    assert step_logs(podman_run)["read"] == [
        "$ cat /stage",
        "built-by-docker",
        "$ cat data.txt",
        "moved",
    ]
    assert step_logs(podman_run)["fail"] == [
        "$ echo failing",
        "failing",
        "$ exit 5",
        "parapipe: exit 5",
    ]
    listed = podman("ps", "-aq", "--filter", f"label={LABEL_RUN}={podman_run.name}")
    assert listed.stdout.split() == []


@needs_podman
def test_podman_image_ids_read_as_dockers() -> None:
    # `podman image inspect` prints bare hex; the plan's hash (and so the tag) needs one form.
    found = anyio.run(PodmanEngine().find_image, BUSYBOX)
    if found is None:
        pytest.skip(f"{BUSYBOX} is not in podman's images (scripts/setup puts it there)")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", found), found


def test_image_id_forms() -> None:
    hex_id = "ee512a6af93463ace321a14a08788b9ff26508c2afedf0cede5ea4c197c3fdd2"
    assert normalized_image_id(hex_id + "\n") == f"sha256:{hex_id}"
    assert normalized_image_id(f"sha256:{hex_id}") == f"sha256:{hex_id}"
    assert normalized_image_id("") == ""


def test_the_fix_is_named_for_either_runtimes_refusal() -> None:
    runc = (
        "Error: runc: runc create failed: unable to start container process: error during"
        " container init: error setting rlimits for ready process: error setting rlimit type 7:"
        " operation not permitted: OCI permission denied"
    )
    crun = "Error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied"
    hybrid = (
        "Error: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all"
        " controllers from cgroupv2"
    )
    for seen in (runc, crun):
        hint = fix_hint(seen)
        assert hint is not None
        assert hint.startswith("podman's default nofile ulimit is above what this host allows")
        assert "run scripts/setup" in hint
        assert 'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]' in hint
    assert "default nproc ulimit" in (fix_hint(runc.replace("type 7", "type 6")) or "")
    assert "default nproc ulimit" in (fix_hint(crun.replace("NOFILE", "NPROC")) or "")
    runtime = fix_hint(hybrid)
    assert runtime is not None
    assert runtime.startswith("podman's OCI runtime cannot run containers on this host")
    assert 'runtime = "runc" under [engine]' in runtime
    assert fix_hint("Error: no such image") is None


@needs_podman
def test_a_run_refused_for_its_ulimits_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The failure Debian's podman 4.3 shows on hosts with low hard limits, made on purpose:
    # a containers.conf asking for more open files than any host here allows.
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1048576:1048576"]\n')
    monkeypatch.setenv("CONTAINERS_CONF", str(conf))
    run = StepRun(
        run_id=f"test-{uuid.uuid4().hex[:12]}",
        step="limited",
        image_id=BUSYBOX,
        commands=("true",),
        env={},
        workdir="/",
        labels={},
    )
    lines: list[str] = []
    try:
        code = anyio.run(PodmanEngine().run_step, run, lines.append)
    except EngineError as exc:
        message = str(exc)
    else:
        pytest.skip(f"this host lets podman raise the open files limit (exit {code})")
    assert message.startswith("podman could not run step 'limited': ")
    assert "podman's default nofile ulimit is above what this host allows" in message
    assert "\n" not in message
    assert podman("ps", "-aq", "--filter", f"label={LABEL_RUN}={run.run_id}").stdout.split() == []
