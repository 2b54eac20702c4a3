"""Docker through `DOCKER_HOST` at a daemon that shares nothing with the host but its socket
(tests/helpers/isolated_engine.py). The conformance suite runs on it as `docker-isolated`;
here: that the daemon really sees none of the host's folders, that a run names it on its first
line, and that killing it mid-run ends the run as an engine error."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.docker import BUSYBOX
from tests.helpers.isolated_engine import IsolatedEngine, running_isolated
from tests.helpers.project import Project
from tests.helpers.tcp_bridge import tcp_bridge

pytestmark = pytest.mark.docker

TOKEN = "tok-remote-3f9a"  # a secret's value


def test_the_isolated_daemon_sees_no_host_folder(
    isolated_docker: IsolatedEngine, tmp_path: Path
) -> None:
    """Without this, a bind mount of a host path could pass the suite by accident."""
    (tmp_path / "on-the-host.txt").write_text("here\n")
    assert (tmp_path / "on-the-host.txt").exists()
    for folder in (tmp_path, Path.cwd()):
        listed = isolated_docker.client(
            "run", "--rm", "-v", f"{folder}:/mounted", BUSYBOX, "ls", "-A", "/mounted"
        )
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == "", f"{folder} is shared with the daemon: {listed.stdout}"
    # Nor the host daemon's socket or data.
    for path in ("/var/run/docker.sock", "/var/lib/docker/containers"):
        probe = isolated_docker.client("run", "--rm", "-v", f"{path}:/p", BUSYBOX, "ls", "-A", "/p")
        assert probe.stdout.strip() == "", path


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_a_run_names_the_remote_daemon_and_hands_data_through_it(
    isolated_docker: IsolatedEngine, project: Project, transport: str
) -> None:
    """Over the daemon's socket, and over TCP (`tcp://127.0.0.1:PORT`, a bridge to it): the
    first line names it, and outputs, secrets (on stdin, through the pool) and a cache volume
    cross as they do locally."""
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          make:
            run: [mkdir -p out, echo made > out/a.txt, 'echo "token $TOKEN"']
            outputs: [out/]
            secrets: [TOKEN]
            caches: {{c: /cache}}
          use:
            run: [cat out/a.txt, 'test "$TOKEN" = {TOKEN}']
            secrets: [TOKEN]
            needs: [make]
    """)
    unix_path = Path(isolated_docker.host.removeprefix("unix://"))
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(tcp_bridge(unix_path)) if transport == "tcp" else None
        env = isolated_docker.env(TOKEN=TOKEN, **({"DOCKER_HOST": host} if host else {}))
        completed = subprocess.run(
            [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "--output", "plain"],
            cwd=project.root, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    first = completed.stdout.splitlines()[0]
    assert f"engine docker at {host or isolated_docker.host} (" in first, first
    assert "make    | token ***" in completed.stdout
    assert TOKEN not in completed.stdout + completed.stderr
    made = project.last_run() / "artifacts/make/out/a.txt"
    assert made.read_text() == "made\n"


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_a_remote_daemon_killed_mid_run_ends_the_running_steps_as_engine_errors(
    project: Project, engine: str
) -> None:
    """SIGKILL, not a shutdown: the attached CLIs are cut off (`unexpected EOF`) rather than
    told their containers ended. `--keep-going`, so fail-fast cancels neither running step
    before it saw the loss itself. Its own daemon, as this one is killed."""
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          long: {{run: [echo long-started, sleep 300]}}
          other: {{run: [echo other-started, sleep 300]}}
          after: {{run: "true", needs: [long]}}
    """)
    with running_isolated(engine, images=(BUSYBOX,)) as daemon:
        process = subprocess.Popen(
            [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "--output", "plain",
             "--jobs", "2", "--keep-going", "--engine", engine],
            cwd=project.root, env=daemon.env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        seen: list[str] = []
        for line in process.stdout:
            seen.append(line)
            if sum("-started" in s and "$ echo" not in s for s in seen) == 2:
                break
        daemon.kill()
        rest, errors = process.communicate(timeout=120)
    shown = "".join(seen) + rest
    assert process.returncode == 3, shown + errors
    for step in ("long", "other"):
        assert f"stopped answering while step '{step}' ran (the CLI was cut off)" in shown, shown
    assert "skipped: needs 'long', which hit an engine error" in shown
    assert "Traceback" not in shown + errors
    assert len(errors.strip().splitlines()) == 1, errors  # the sweep could not reach it
