"""The engine going away mid-run: the run ends as an engine error, without hanging.

The test owns a second Docker daemon, on its own socket, data root and network namespace, so
stopping it leaves the daemon every other test uses alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.docker import BUSYBOX
from tests.helpers.project import Project

pytestmark = pytest.mark.docker


class SecondDaemon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.root / "dockerd.log").open("ab")
        # Its own network namespace: a daemon without a bridge removes `docker0`, which
        # would break the host's daemon.
        self.process = subprocess.Popen(
            [
                "unshare", "--net", "--fork", "--kill-child", "dockerd",
                "--host", self.host, "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"),
                "--bridge", "none", "--iptables=false", "--ip-masq=false",
            ],
            stdout=log, stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self.answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError((self.root / "dockerd.log").read_text()[-2000:])
            time.sleep(0.2)

    def stop(self) -> None:
        pid_file = self.root / "docker.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        if self.process is not None:
            self.process.wait(timeout=60)
            self.process = None

    def answers(self) -> bool:
        probe = subprocess.run(
            ["docker", "version"], env=self.env(), capture_output=True, check=False
        )
        return probe.returncode == 0

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "NO_COLOR": "1"}


@pytest.fixture
def second_daemon() -> Iterator[SecondDaemon]:
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("unshare"):
        pytest.skip("needs root, dockerd and unshare to run a daemon of its own")
    root = Path(f"/tmp/parapipe-dockerd-{os.getpid()}")  # short: unix socket paths are limited
    root.mkdir()
    daemon = SecondDaemon(root)
    try:
        daemon.start()
        save = subprocess.Popen(["docker", "save", BUSYBOX], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "load"], stdin=save.stdout, env=daemon.env(), capture_output=True, check=True
        )
        save.wait()
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_daemon_that_stops_mid_run_ends_it_as_an_engine_error(
    project: Project, second_daemon: SecondDaemon
) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          long: {{run: [echo long-started, sleep 300]}}
          after: {{run: "true", needs: [long]}}
    """)
    process = subprocess.Popen(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "--output", "plain"],
        cwd=project.root, env=second_daemon.env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if "long-started" in line:
            break
    second_daemon.stop()
    rest, errors = process.communicate(timeout=60)  # no hang: the daemon's stop takes ~10 s
    assert process.returncode == 3, rest + errors
    assert "stopped answering while step 'long' ran" in rest
    assert "Traceback" not in rest + errors
    assert len(errors.strip().splitlines()) == 1  # the sweep could not reach it: one line
    run_id = project.last_run().name
    second_daemon.start()
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.parapipe.run={run_id}"],
        env=second_daemon.env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert left.stdout.split() == []
