"""The Docker engine against the real daemon: images built, steps run, containers removed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from parapipe.engine.api import StepRun
from parapipe.engine.docker.engine import DockerEngine
from parapipe.engine.registry import choose_engine
from parapipe.errors import EngineError, EngineUnavailable, ImageBuildFailed, UsageError
from parapipe.model import (
    CA_BUNDLE_PATH,
    LABEL_PIPELINE,
    LABEL_RUN,
    DockerfileBuild,
    ImagePlan,
    ImageSpec,
    Location,
    Pipeline,
)
from parapipe.run.image_plan import host_ca_bundle, plan_image
from tests.helpers.docker import BUSYBOX, remove_pipeline_images
from tests.helpers.steps import make_step_run


def _docker_ready() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 10 s"
    if info.returncode != 0:
        return "`docker info` failed: no Docker daemon answers (scripts/setup starts one)"
    seeded = subprocess.run(["docker", "image", "inspect", BUSYBOX], capture_output=True)
    if seeded.returncode != 0:
        return f"{BUSYBOX} is not seeded (run scripts/seed-images)"
    return None


_NOT_READY = _docker_ready()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.anyio,
    pytest.mark.skipif(_NOT_READY is not None, reason=_NOT_READY or ""),
]


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def containers(*filters: str) -> list[str]:
    argv = ["ps", "-aq"]
    for condition in filters:
        argv += ["--filter", condition]
    return docker(*argv).stdout.split()


def busybox_id() -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", BUSYBOX).stdout.strip()


@pytest.fixture
def engine() -> DockerEngine:
    return DockerEngine()


@pytest.fixture
def run_id() -> Iterator[str]:
    """A run id of this test's own; no container labelled with it may outlive the test."""
    run_id = f"test-{uuid.uuid4().hex[:12]}"
    yield run_id
    leftover = containers(f"label={LABEL_RUN}={run_id}")
    if leftover:
        docker("rm", "-f", *leftover)
    assert not leftover, f"containers left behind: {leftover}"


@pytest.fixture
def pipeline_name() -> Iterator[str]:
    """A pipeline name of this test's own; the images built for it are removed afterwards,
    intermediate ones included (they carry the pipeline label)."""
    name = f"test-engine-{uuid.uuid4().hex[:10]}"
    yield name
    leftover = containers(f"label={LABEL_PIPELINE}={name}")
    if leftover:
        docker("rm", "-f", *leftover)
    images = docker("image", "ls", "-aq", "--filter", f"label={LABEL_PIPELINE}={name}").stdout
    tagged = docker("image", "ls", "-q", f"parapipe/{name}").stdout
    ids = sorted(set(images.split()) | set(tagged.split()))
    if ids:
        docker("image", "rm", "-f", *ids)
    remove_pipeline_images(name)  # the source stages that were parents of those
    assert not leftover, f"build containers left behind: {leftover}"


def make_pipeline(
    name: str,
    source: Path,
    *,
    setup: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    workdir: str = "/src",
    host_ca: bool = False,
) -> Pipeline:
    image = ImageSpec(
        origin=BUSYBOX,
        source=source,
        exclude=(),
        workdir=workdir,
        env=env or {},
        setup=setup,
        host_ca=host_ca,
        location=Location(file="ci.yaml", line=2, column=1),
    )
    return Pipeline(
        name=name,
        spec_path=source / "ci.yaml",
        project_root=source,
        image=image,
        steps={},
    )


def step(run_id: str, image_id: str, *commands: str, **env: str) -> StepRun:
    name = f"step-{uuid.uuid4().hex[:6]}"
    return make_step_run(
        run_id=run_id, step=name, image_id=image_id, commands=commands, env=env, workdir="/"
    )


async def build(engine: DockerEngine, pipeline: Pipeline) -> tuple[ImagePlan, str, list[str]]:
    lines: list[str] = []
    base_id = await engine.resolve_base(pipeline.image, lines.append)
    plan = plan_image(pipeline, base_id)
    image_id = await engine.build_image(plan, lines.append)
    return plan, image_id, lines


async def test_check_answers(engine: DockerEngine) -> None:
    await engine.check()


async def test_check_names_the_daemon_that_did_not_answer(
    engine: DockerEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(EngineUnavailable) as caught:
        await engine.check()
    message = str(caught.value)
    assert message.startswith("docker: ")
    assert f"{tmp_path}/nothing.sock" in message
    assert "start it" in message
    assert "\n" not in message


async def test_check_without_the_binary() -> None:
    class Missing(DockerEngine):
        binary = "parapipe-no-such-docker"

    with pytest.raises(EngineUnavailable, match="`parapipe-no-such-docker` command was not found"):
        await Missing().check()


async def test_choose_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine, reason = await choose_engine("docker")
    assert isinstance(engine, DockerEngine)
    assert reason == "--engine docker"
    engine, reason = await choose_engine("auto")
    assert engine.name == "docker"
    assert reason == "the first engine that answered"
    with pytest.raises(UsageError, match="unknown engine 'rocket'"):
        await choose_engine("rocket")

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    monkeypatch.setenv("PATH", f"{Path(shutil.which('docker') or '').parent}")
    if shutil.which("podman") is None:
        with pytest.raises(EngineUnavailable) as caught:
            await choose_engine("auto")
        message = str(caught.value)
        assert message.startswith("no container engine answered: docker: ")
        assert "| podman: the `podman` command was not found" in message
    with pytest.raises(EngineUnavailable, match=r"^docker: "):
        await choose_engine("docker")


async def test_resolve_base_finds_a_local_image(engine: DockerEngine, tmp_path: Path) -> None:
    lines: list[str] = []
    base_id = await engine.resolve_base(make_pipeline("x", tmp_path).image, lines.append)
    assert base_id == busybox_id()
    assert lines == []  # nothing pulled


async def test_resolve_base_that_cannot_be_pulled(engine: DockerEngine, tmp_path: Path) -> None:
    # A registry on a closed local port: the pull fails at once, without any network.
    ref = "localhost:1/parapipe-missing:latest"
    image = make_pipeline("x", tmp_path).image
    image = replace(image, origin=ref)
    with pytest.raises(ImageBuildFailed) as caught:
        await engine.resolve_base(image, lambda line: None)
    message = str(caught.value)
    assert message.startswith(
        f"base image '{ref}' is not available locally and could not be pulled: "
    )
    assert "connection refused" in message
    assert "\n" not in message


async def test_resolve_base_from_a_dockerfile(
    engine: DockerEngine, tmp_path: Path, run_id: str
) -> None:
    context = tmp_path / "base"
    context.mkdir()
    (context / "Containerfile").write_text(
        f'FROM {BUSYBOX}\nARG GREETING\nRUN echo "$GREETING" > /greeting\n'
    )
    image = make_pipeline("x", tmp_path).image
    image = replace(
        image,
        origin=DockerfileBuild(
            context=context,
            dockerfile=context / "Containerfile",
            args={"GREETING": f"hello {run_id}"},
        ),
    )
    lines: list[str] = []
    base_id = await engine.resolve_base(image, lines.append)
    try:
        assert base_id.startswith("sha256:")
        assert lines, "the build's output reaches the log"
        output: list[str] = []
        assert await engine.run_step(step(run_id, base_id, "cat /greeting"), output.append) == 0
        assert output == ["$ cat /greeting", f"hello {run_id}"]
    finally:
        docker("image", "rm", "-f", base_id)


async def test_resolve_base_from_a_broken_dockerfile(engine: DockerEngine, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN exit 9\n")
    image = make_pipeline("x", tmp_path).image
    image = replace(
        image,
        origin=DockerfileBuild(context=tmp_path, dockerfile=tmp_path / "Dockerfile"),
    )
    with pytest.raises(
        ImageBuildFailed, match=r"^building the base image from .*Dockerfile failed"
    ):
        await engine.resolve_base(image, lambda line: None)


async def test_build_then_run_a_step(
    engine: DockerEngine, tmp_path: Path, run_id: str, pipeline_name: str
) -> None:
    source = tmp_path / "project"
    (source / "app").mkdir(parents=True)
    (source / "data.txt").write_text("some data\n")
    (source / "app" / "main.sh").write_text('#!/bin/sh\necho main ran in "$(pwd)"\n')
    (source / "app" / "main.sh").chmod(0o755)
    (source / "link").symlink_to("data.txt")
    env = {"GREETING": "hello world", "TRICKY": 'a "b" $c \\d'}
    pipeline = make_pipeline(
        pipeline_name,
        source,
        setup=("echo building", "cat data.txt > /built.txt"),
        env=env,
        host_ca=True,
    )
    plan, image_id, build_log = await build(engine, pipeline)

    assert "$ cat data.txt > /built.txt" in build_log  # setup commands are announced
    assert await engine.find_image(plan.tag) == image_id
    assert await engine.find_image(f"parapipe/{pipeline_name}:missing") is None
    # Nothing changed, so the plan names the same image: a re-run builds nothing.
    assert plan_image(pipeline, plan.base_id).tag == plan.tag

    commands = (
        "pwd",
        "cat /built.txt",
        "cat data.txt",
        "readlink link",
        "./app/main.sh",
        'echo "$GREETING|$TRICKY|$STEP_VAR|$HOME|${EMPTY-unset}"',
    )
    run = StepRun(
        run_id=run_id,
        step="check",
        image_id=image_id,
        commands=commands,
        env={"STEP_VAR": "from the step", "HOME": "/tmp/home", "EMPTY": ""},
        workdir="/src",
        labels={"io.parapipe.test": "yes"},
    )
    output: list[str] = []
    assert await engine.run_step(run, output.append) == 0
    assert output == [
        "$ pwd",
        "/src",
        "$ cat /built.txt",
        "some data",
        "$ cat data.txt",
        "some data",
        "$ readlink link",
        "data.txt",
        "$ ./app/main.sh",
        "main ran in /src",
        f"$ {commands[-1]}",
        'hello world|a "b" $c \\d|from the step|/tmp/home|',
    ]

    if host_ca_bundle() is not None:
        ca_output: list[str] = []
        ca_check = step(run_id, image_id, f"test -s {CA_BUNDLE_PATH}", 'echo "$SSL_CERT_FILE"')
        assert await engine.run_step(ca_check, ca_output.append) == 0
        assert ca_output[-1] == CA_BUNDLE_PATH


async def test_an_empty_source_folder_builds(
    engine: DockerEngine, tmp_path: Path, pipeline_name: str
) -> None:
    _, image_id, _ = await build(engine, make_pipeline(pipeline_name, tmp_path))
    assert image_id.startswith("sha256:")


async def test_failing_setup_names_the_command(
    engine: DockerEngine, tmp_path: Path, pipeline_name: str
) -> None:
    pipeline = make_pipeline(pipeline_name, tmp_path, setup=("echo fine", "echo boom; exit 7"))
    with pytest.raises(ImageBuildFailed) as caught:
        await build(engine, pipeline)
    assert str(caught.value) == "setup command 2 `echo boom; exit 7` failed with exit 7"
    # `pipeline_name` checks that the failed RUN's container did not stay behind.


# 125 and 127 are what `docker run` returns for its own failures, but with nothing on the
# CLI's stderr they are the step's.
@pytest.mark.parametrize("code", [0, 1, 3, 125, 127])
async def test_exit_codes(engine: DockerEngine, run_id: str, code: int) -> None:
    output: list[str] = []
    assert await engine.run_step(step(run_id, busybox_id(), f"exit {code}"), output.append) == code


async def test_commands_stop_at_the_first_failure(engine: DockerEngine, run_id: str) -> None:
    output: list[str] = []
    run = step(run_id, busybox_id(), "echo one", "echo two >&2; exit 4", "echo never")
    assert await engine.run_step(run, output.append) == 4
    assert output == [
        "$ echo one",
        "one",
        "$ echo two >&2; exit 4",
        "two",
        "parapipe: exit 4",
    ]


async def test_output_that_is_not_utf8(engine: DockerEngine, run_id: str) -> None:
    output: list[str] = []
    run = step(run_id, busybox_id(), r"printf 'a\377b\r\nno newline at the end'")
    assert await engine.run_step(run, output.append) == 0
    assert output[1:] == ["a\ufffdb", "no newline at the end"]


async def test_a_missing_image_is_an_engine_error(engine: DockerEngine, run_id: str) -> None:
    run = step(run_id, "sha256:" + "0" * 64, "true")
    with pytest.raises(EngineError, match="could not run step") as caught:
        await engine.run_step(run, lambda line: None)
    assert "\n" not in str(caught.value)


async def test_cancelling_a_step_removes_its_container(engine: DockerEngine, run_id: str) -> None:
    started = anyio.Event()

    def log(line: str) -> None:
        if line == "$ sleep 30":
            started.set()

    run = step(run_id, busybox_id(), "sleep 30")
    with anyio.fail_after(60):  # only against a hang; the container is killed, not awaited
        async with anyio.create_task_group() as group:
            group.start_soon(engine.run_step, run, log)
            await started.wait()
            assert len(containers(f"label={LABEL_RUN}={run_id}")) == 1
            group.cancel_scope.cancel()
    assert containers(f"label={LABEL_RUN}={run_id}") == []


async def test_remove_containers_sweeps_by_label(engine: DockerEngine, run_id: str) -> None:
    label = f"{LABEL_RUN}={run_id}"
    running = docker("run", "-d", "--label", label, BUSYBOX, "sleep", "60")
    created = docker("create", "--label", label, BUSYBOX, "true")
    assert running.returncode == 0, running.stderr
    assert created.returncode == 0, created.stderr
    other = docker("create", "--label", f"{LABEL_RUN}={run_id}-other", BUSYBOX, "true")
    try:
        assert len(containers(f"label={label}")) == 2
        await engine.remove_containers(run_id)
        assert containers(f"label={label}") == []
        assert containers(f"id={other.stdout.strip()}") != []
        await engine.remove_containers(run_id)  # nothing left to remove is fine
    finally:
        docker("rm", "-f", other.stdout.strip())


async def test_check_gives_up_on_a_daemon_that_never_answers(
    engine: DockerEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A socket that takes connections into its backlog and never answers them.
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(path))
        silent.listen(8)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        with pytest.raises(EngineUnavailable) as caught:
            await engine.check()
    assert str(caught.value) == (
        f"docker: no daemon answered on unix://{path} within 5 s;"
        " start it (sudo systemctl start docker, or scripts/start-engine)"
    )


FAKE_CLI = """#!/bin/sh
echo "$1 $2 $3" >> "{calls}"
case "$1" in
  run) echo "$ sleep 30"
       echo 'level=error msg="error waiting for container: unexpected EOF"' >&2
       exit 125 ;;
  *) exit 0 ;;
esac
"""


async def test_a_daemon_lost_during_a_step_is_an_engine_error(tmp_path: Path) -> None:
    """What the docker CLI does when the daemon goes away under a running container, played
    by a fake CLI: the step's error is one line, and the container is removed all the same."""
    calls = tmp_path / "calls"
    cli = tmp_path / "fake-docker"
    cli.write_text(FAKE_CLI.format(calls=calls))
    cli.chmod(0o755)

    class Fake(DockerEngine):
        binary = str(cli)

    run = step("r1", "sha256:" + "0" * 64, "sleep 30")
    output: list[str] = []
    with pytest.raises(EngineError) as caught:
        await Fake().run_step(run, output.append)
    assert str(caught.value) == (
        f"docker could not run step {run.step!r}:"
        ' level=error msg="error waiting for container: unexpected EOF"'
    )
    invoked = calls.read_text().splitlines()
    # After the lost connection the engine asks whether the daemon still answers (it does
    # here, so the client's own line stands), then removes the container.
    assert invoked == [
        "run --rm --pull=never",
        "version --format {{.Server.Version}}",
        f"rm -f parapipe-r1-{run.step}",
    ]


async def test_cancelling_a_build_leaves_no_container(
    engine: DockerEngine, tmp_path: Path, pipeline_name: str
) -> None:
    pipeline = make_pipeline(pipeline_name, tmp_path, setup=("echo started; sleep 60",))
    base_id = await engine.resolve_base(pipeline.image, lambda line: None)
    plan = plan_image(pipeline, base_id)
    started = anyio.Event()

    def log(line: str) -> None:
        if line == "started":
            started.set()

    with anyio.fail_after(60):  # only against a hang
        async with anyio.create_task_group() as group:
            group.start_soon(engine.build_image, plan, log)
            await started.wait()
            group.cancel_scope.cancel()
    # The daemon stops the build when its client goes; give it time to remove the container.
    label = f"label={LABEL_PIPELINE}={pipeline_name}"
    for _ in range(150):  # up to 30 s, against a hang
        if not containers(label):
            break
        await anyio.sleep(0.2)
    assert containers(label) == []
    assert await engine.find_image(plan.tag) is None
