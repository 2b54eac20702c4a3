"""`parapipe run -i` and `parapipe shell` on a real pseudo-terminal (pexpect), with real
containers on Docker and on Podman: the shell sees what the step left and its setting, leaving it
ends the run with the run's exit code, and nothing is left behind — no container, no kept image.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pexpect
import pytest

from tests.helpers.docker import remove_pipeline_images
from tests.helpers.isolated_engine import IsolatedEngine
from tests.helpers.podman import why_podman_cannot_run
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

TOKEN = f"tok-{uuid.uuid4().hex[:16]}"  # a secret's value: never in a kept image
PROMPT = re.compile(r"Open a shell in '(\w+)'\? ")
WAIT = 240  # seconds for a run on a loaded machine: a bound for a hang, not a measurement

FAILING = """\
image: {from: busybox:latest}
steps:
  build:
    run: ["mkdir -p dist && echo built > dist/app.txt"]
    outputs: [dist]
  test:
    needs: [build]
    env: {GREETING: hello-from-env}
    secrets: [API_TOKEN]
    caches: {tool: /cache}
    run: ["echo proof > /tmp/proof", "exit 3"]
"""

TWO_FAILURES = """\
image: {from: busybox:latest}
steps:
  left: {run: ["echo left > /tmp/proof", "exit 4"]}
  right: {run: ["echo right > /tmp/proof", "exit 5"]}
"""


@pytest.fixture(params=["docker", "podman", "docker-isolated"])
def engine(
    request: pytest.FixtureRequest, project: Project, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The engine; `docker-isolated` is Docker through `DOCKER_HOST` at a daemon that shares no
    file with the host (tests/helpers/isolated_engine.py)."""
    name = request.param
    if name == "docker-isolated":
        isolated: IsolatedEngine = request.getfixturevalue("isolated_docker")
        for variable, value in isolated.env().items():
            monkeypatch.setenv(variable, value)
        name = "docker"
    if name == "podman" and (why := why_podman_cannot_run()) is not None:
        pytest.skip(why)
    yield name
    engine_cli(name, "volume", "rm", "-f", f"parapipe-cache-{project.name}-tool")
    if name == "podman":
        built = engine_cli("podman", "image", "ls", "-q", f"parapipe/{project.name}").split()
        if built:
            engine_cli("podman", "image", "rm", "-f", *built)
        remove_pipeline_images(project.name, "podman")  # its source stages too


def engine_cli(engine: str, *args: str) -> str:
    done = subprocess.run([engine, *args], capture_output=True, text=True, check=False)
    return done.stdout


def spawn(project: Project, engine: str, *args: str) -> pexpect.spawn:
    env = {**os.environ, "NO_COLOR": "1", "API_TOKEN": TOKEN, "TERM": "dumb"}
    return pexpect.spawn(
        sys.executable,
        ["-m", "parapipe", *args, "-f", "ci.yaml", "--engine", engine],
        cwd=str(project.root),
        env=env,
        encoding="utf-8",
        timeout=WAIT,
        dimensions=(50, 200),
    )


def in_shell(child: pexpect.spawn, command: str, expected: str) -> None:
    """Run `command` in the shell and wait for `expected`, which its echo cannot show: the
    command prints it through `$(...)` or `${...}`."""
    child.sendline(command)
    child.expect_exact(expected)


def finished(child: pexpect.spawn) -> int:
    try:
        child.expect(pexpect.EOF)
    except pexpect.TIMEOUT:
        # What was still running says where it hung: parapipe, an engine call, or a child
        # holding the terminal open after parapipe exited.
        tree = subprocess.run(["ps", "-ef", "--forest"], capture_output=True, text=True).stdout
        pytest.fail(f"no exit within {WAIT}s; output:\n{child.before}\nprocesses:\n{tree}")
    child.close()
    assert child.exitstatus is not None, child.before
    return child.exitstatus


def left_behind(engine: str, project: Project, run_id: str) -> list[str]:
    containers = engine_cli(engine, "ps", "-aq", "--filter", f"label=io.parapipe.run={run_id}")
    pipeline = engine_cli(
        engine, "ps", "-aq", "--filter", f"label=io.parapipe.pipeline={project.name}"
    )
    images = engine_cli(engine, "images", "--format", "{{.Repository}}:{{.Tag}}")
    kept = [line for line in images.split() if run_id in line]
    # A kept image carries its container's labels, tagged or not.
    labelled = engine_cli(engine, "images", "-aq", "--filter", f"label=io.parapipe.run={run_id}")
    return [*containers.split(), *pipeline.split(), *kept, *labelled.split()]


def run_id_of(project: Project) -> str:
    return project.last_run().name


def test_the_shell_opens_where_the_step_failed_and_leaving_ends_the_run(
    project: Project, engine: str
) -> None:
    project.write_spec(FAILING)
    child = spawn(project, engine, "run", "-i", "--output", "plain")
    child.expect(PROMPT)
    assert child.match.group(1) == "test"
    assert "step 'test' failed with exit 3" in child.before
    assert "command: exit 3" in child.before
    assert "leave with `exit`" in child.before
    child.sendline("")
    in_shell(child, 'echo "P=$(cat /tmp/proof)"', "P=proof")
    in_shell(child, 'echo "E=${GREETING}"', "E=hello-from-env")
    in_shell(child, 'echo "S=${API_TOKEN}"', f"S={TOKEN}")
    in_shell(child, 'echo "D=$(cat dist/app.txt) W=$(pwd)"', "D=built W=/src")
    in_shell(child, 'echo "C=$(grep -c " /cache " /proc/mounts)"', "C=1")
    child.sendline("exit")
    assert finished(child) == 1  # the run's exit code, not the shell's
    assert left_behind(engine, project, run_id_of(project)) == []


def test_two_parallel_failures_are_offered_in_turn(project: Project, engine: str) -> None:
    project.write_spec(TWO_FAILURES)
    child = spawn(project, engine, "run", "-i", "--keep-going", "--output", "plain")
    offered: list[str] = []
    for number in (1, 2):
        child.expect(PROMPT)
        step = child.match.group(1)
        offered.append(step)
        assert f"[{number}/2] step '{step}' failed" in child.before
        child.sendline("y")
        in_shell(child, 'echo "P=$(cat /tmp/proof)"', f"P={step}")
        child.sendline("exit")
    assert sorted(offered) == ["left", "right"]
    assert finished(child) == 1
    assert left_behind(engine, project, run_id_of(project)) == []


def test_quit_skips_to_the_end(project: Project, engine: str) -> None:
    project.write_spec(TWO_FAILURES)
    child = spawn(project, engine, "run", "-i", "--keep-going", "--output", "plain")
    child.expect(PROMPT)
    child.sendline("q")
    assert finished(child) == 1
    assert "[2/2]" not in (child.before or "")
    assert left_behind(engine, project, run_id_of(project)) == []


def test_keep_failed_prints_an_image_without_the_secret(project: Project, engine: str) -> None:
    project.write_spec(FAILING)
    child = spawn(project, engine, "run", "-i", "--keep-failed", "--output", "plain")
    child.expect(PROMPT)
    child.sendline("s")
    child.expect(r"kept the filesystem of 'test' as image (\S+)")
    image = child.match.group(1)
    try:
        assert finished(child) == 1
        inspected = engine_cli(engine, "image", "inspect", image)
        history = engine_cli(engine, "history", "--no-trunc", image)
        assert inspected, f"{engine} has no image {image}"
        assert TOKEN not in inspected
        assert TOKEN not in history
        assert "GREETING=hello-from-env" in inspected
    finally:
        engine_cli(engine, "image", "rm", "-f", image)
    assert left_behind(engine, project, run_id_of(project)) == []


def test_a_retried_failure_is_kept_once(project: Project, engine: str) -> None:
    project.write_spec(
        "image: {from: busybox:latest}\n"
        "steps:\n"
        '  flaky: {retries: 1, run: ["echo $PARAPIPE_ATTEMPT > /tmp/proof", "exit 6"]}\n'
    )
    child = spawn(project, engine, "run", "-i", "--output", "plain")
    child.expect(PROMPT)
    child.sendline("")
    in_shell(child, 'echo "A=$(cat /tmp/proof)"', "A=2")  # the last attempt's
    child.sendline("exit")
    assert finished(child) == 1
    assert left_behind(engine, project, run_id_of(project)) == []


def test_ctrl_c_at_the_offer_leaves_nothing(project: Project, engine: str) -> None:
    project.write_spec(FAILING)
    child = spawn(project, engine, "run", "-i", "--output", "plain")
    child.expect(PROMPT)
    child.sendintr()
    assert finished(child) == 130
    assert left_behind(engine, project, run_id_of(project)) == []


def test_without_a_terminal_run_i_is_refused_at_once(project: Project) -> None:
    project.write_spec(FAILING)
    done = subprocess.run(
        [sys.executable, "-m", "parapipe", "run", "-i", "-f", "ci.yaml"],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "parapipe: -i/--interactive needs a terminal on stdin, and stdin is not one"
    ]
    assert project.runs() == []  # refused before anything ran


def test_parapipe_shell_has_the_steps_env_and_its_needs_outputs(
    project: Project, engine: str
) -> None:
    project.write_spec(FAILING)
    built = project.run("run", "-f", "ci.yaml", "--engine", engine, "build")
    assert built.exit_code == 0, built.output
    child = spawn(project, engine, "shell", "test")
    in_shell(child, 'echo "D=$(cat dist/app.txt)"', "D=built")
    in_shell(
        child, 'echo "E=${GREETING} S=${API_TOKEN} W=$(pwd)"', f"E=hello-from-env S={TOKEN} W=/src"
    )
    # The value reached the shell without its container's config: not `-e`, but a tmpfs file
    # the shell read and removed.
    shells = engine_cli(
        engine, "ps", "-q", "--filter", f"label=io.parapipe.pipeline={project.name}"
    )
    inspected = engine_cli(engine, "inspect", *shells.split())
    assert "hello-from-env" in inspected
    assert TOKEN not in inspected
    in_shell(child, 'echo "F=$(ls -A /run/parapipe-secrets | wc -l)"', "F=0")
    in_shell(child, 'echo "C=$(grep -c " /cache " /proc/mounts)"', "C=1")
    child.sendline("exit 7")
    assert finished(child) == 7  # the shell's own exit code
    assert left_behind(engine, project, "shell-") == []


@pytest.mark.parametrize("engine", ["docker"], indirect=True)
def test_parapipe_shell_gets_a_matrix_needs_outputs_under_each_instance(
    project: Project, engine: str
) -> None:
    project.write_spec("""
        image: {from: busybox:latest}
        steps:
          build: {run: [mkdir -p out, echo "a=$A" > out/f], outputs: [out], matrix: {A: [1, 2]}}
          use: {run: cat build/*/out/f, needs: [build]}
    """)
    built = project.run("run", "-f", "ci.yaml", "--engine", engine, "build")
    assert built.exit_code == 0, built.output
    child = spawn(project, engine, "shell", "use")
    in_shell(child, 'echo "F=$(cat build/A=1/out/f build/A=2/out/f | tr "\\n" ,)"', "F=a=1,a=2,")
    child.sendline("exit 0")
    assert finished(child) == 0
    assert left_behind(engine, project, "shell-") == []
    whole = spawn(project, engine, "shell", "build")
    assert finished(whole) == 2


# -- services in the shells --------------------------------------------------------------------

# A key-value service in busybox alone (as in test_services.py, so it runs on Podman too): what
# is sent to port 7000 is served back over HTTP as /data; /token shows the secret it was given.
KV_SERVICE = """\
image: {from: busybox:latest}
services:
  kv:
    secrets: [API_TOKEN]
    run:
      - mkdir -p /www && touch /www/data && echo "token=$API_TOKEN" > /www/token
      - httpd -p 8080 -h /www
      - while true; do nc -l -p 7000 >> /www/data; done
    ready: {run: "wget -q -O /dev/null http://127.0.0.1:8080/data", timeout: 60s, interval: 100ms}
"""
# Sends until the service holds something (the listener may come up after the web server that
# readiness asks), then shows what it holds; the echo of the line cannot show `KV=<value>`.
SEND_TO_KV = (
    "for i in $(seq 50); do echo {value} | nc -w 1 kv 7000; d=$(wget -q -O- http://kv:8080/data);"
    ' [ -z "$d" ] || break; sleep 0.2; done; echo "KV=$d"'
)


def networks_of(engine: str, project: Project) -> list[str]:
    listed = engine_cli(
        engine, "network", "ls", "-q", "--filter", f"label=io.parapipe.pipeline={project.name}"
    )
    return listed.split()


def service_containers(engine: str, project: Project) -> list[str]:
    listed = engine_cli(
        engine, "ps", "-aq", "--filter", f"label=io.parapipe.pipeline={project.name}",
        "--filter", "label=io.parapipe.service=kv",
    )  # fmt: skip
    return listed.split()


@pytest.mark.parametrize("engine", ["docker", "podman"], indirect=True)
def test_parapipe_shell_reaches_the_steps_service_by_name(project: Project, engine: str) -> None:
    project.write_spec(KV_SERVICE + 'steps:\n  test: {services: [kv], run: ["exit 3"]}\n')
    child = spawn(project, engine, "shell", "test")
    child.expect(r"parapipe: service 'kv' is ready \(\d+\.\ds\)")
    in_shell(child, SEND_TO_KV.format(value="from-the-shell"), "KV=from-the-shell")
    # Its secret reached it on stdin, as in a run: in its environment, not in its config.
    in_shell(child, 'echo "T=$(wget -q -O- http://kv:8080/token)"', f"T=token={TOKEN}")
    services = service_containers(engine, project)
    assert len(services) == 1
    assert TOKEN not in engine_cli(engine, "inspect", *services)
    assert len(networks_of(engine, project)) == 1
    child.sendline("exit 4")
    assert finished(child) == 4
    assert left_behind(engine, project, "shell-") == []
    assert networks_of(engine, project) == []
    logs = project.root / ".parapipe" / "shells" / "test.services"
    assert (logs / "kv.log").exists()


NEVER_READY = """\
image: {{from: busybox:latest}}
services:
  kv: {{run: ["echo starting; sleep 600"], ready: {{run: "false", timeout: {timeout}}}}}
steps:
  test: {{services: [kv], run: ["true"]}}
"""


@pytest.mark.parametrize("engine", ["docker", "podman"], indirect=True)
def test_a_service_never_ready_is_one_line_and_no_shell(project: Project, engine: str) -> None:
    project.write_spec(NEVER_READY.format(timeout="1s"))
    child = spawn(project, engine, "shell", "test")
    assert finished(child) == 1
    said = [line for line in child.before.splitlines() if "kv" in line]
    logs = project.root / ".parapipe" / "shells" / "test.services"
    assert said == [
        f"parapipe: service 'kv' was not ready after 1s: no shell opened (the services' logs: {logs})"
    ], child.before
    assert "starting" in (logs / "kv.log").read_text()
    assert left_behind(engine, project, "shell-") == []
    assert networks_of(engine, project) == []


@pytest.mark.parametrize("engine", ["docker", "podman"], indirect=True)
def test_ctrl_c_while_services_start_leaves_nothing(project: Project, engine: str) -> None:
    project.write_spec(NEVER_READY.format(timeout="600s"))
    child = spawn(project, engine, "shell", "test")
    for _ in range(WAIT * 10):  # until its service runs: then parapipe waits for it to be ready
        if service_containers(engine, project):
            break
        child.expect([pexpect.TIMEOUT], timeout=0.1)
    child.sendintr()
    assert finished(child) == 130
    assert left_behind(engine, project, "shell-") == []
    assert networks_of(engine, project) == []


@pytest.mark.parametrize("engine", ["docker"], indirect=True)
def test_run_i_opens_the_shell_beside_fresh_services(project: Project, engine: str) -> None:
    step = SEND_TO_KV.format(value="from-the-step").replace('"', '\\"')
    project.write_spec(
        KV_SERVICE + f'steps:\n  test: {{services: [kv], run: ["{step}", "exit 3"]}}\n'
    )
    child = spawn(project, engine, "run", "-i", "--output", "plain")
    child.expect(PROMPT)
    assert "its services start afresh (kv): the data the step left in them is not there" in (
        child.before
    )
    child.sendline("")
    child.expect(r"parapipe: service 'kv' is ready \(\d+\.\ds\)")
    in_shell(child, 'echo "D=[$(wget -q -O- http://kv:8080/data)]"', "D=[]")  # a fresh one
    in_shell(child, SEND_TO_KV.format(value="from-the-shell"), "KV=from-the-shell")
    child.sendline("exit")
    assert finished(child) == 1
    run_id = run_id_of(project)
    assert left_behind(engine, project, run_id) == []
    assert networks_of(engine, project) == []
    assert (project.last_run() / "test.shell.services" / "kv.log").exists()
