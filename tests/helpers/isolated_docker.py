"""A second Docker daemon that shares nothing with the host but a socket: a remote engine, here.

A privileged container cannot start on our machines, so the daemon gets namespaces instead:
`unshare --mount --net --pid` runs Debian's dockerd 20.10 as the first process of its own PID
namespace (when it ends, the kernel ends its containerd, shims and containers with it), in a
network namespace of its own (its `docker0` and addresses are not the host's; no iptables), and
in a mount namespace where a tmpfs covers every host folder a run uses: the temp folder (where
the tests' projects and parapipe's state live), /work, the home folders, and also /run,
/var/lib/docker and /etc/docker, so it can find neither the host daemon's socket, data or
config, nor the host's containerd. A bind mount of a host path there shows an empty folder
instead of silently working. Its data root, exec root, pid file and socket are in one folder of
its own on the real disk (/var/tmp), which the host reaches: the socket is its only door.

`isolated_docker` is the session's daemon, started once, seeded with the test images by
`docker save | docker load`, and removed at the end with everything in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import pytest

from tests.helpers.docker import BUSYBOX

SEED_IMAGES: Final = (BUSYBOX, "debian:bookworm-slim")
START_TIMEOUT: Final = 60.0
# Short: the socket paths under it (containerd's included) must fit a sockaddr_un.
STATE_PARENT: Final = Path("/var/tmp")

# $1: the daemon's own folder. Everything else in the namespace is the host's, read-only in
# practice: the daemon writes only under $1 and into the tmpfs folders.
_NAMESPACE_SCRIPT: Final = """set -e
root=$1; shift
for folder in "$@"; do mount -t tmpfs -o size=64m parapipe-isolated "$folder"; done
ip link set lo up
echo '{}' > "$root/daemon.json"
exec dockerd --config-file "$root/daemon.json" --data-root "$root/data" \\
  --exec-root "$root/exec" --pidfile "$root/dockerd.pid" -H "unix://$root/docker.sock" \\
  --iptables=false --ip-masq=false
"""


def why_unavailable() -> str | None:
    """Why an isolated daemon cannot run here, or None."""
    if os.geteuid() != 0:
        return "an isolated dockerd needs root (namespaces, mounts)"
    # dockerd 20.10 (Debian's docker.io) starts a containerd of its own under its exec root.
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2"), ("dockerd", "docker.io")):
        if shutil.which(tool) is None:
            return f"an isolated dockerd needs `{tool}` ({package}), not installed here"
    return None


def hidden_folders(root: Path) -> list[str]:
    """The host folders covered by a tmpfs in the daemon's mount namespace."""
    wanted = [
        tempfile.gettempdir(),
        "/tmp",
        "/work",
        "/root",
        "/home",
        str(Path.cwd()),
        "/run",
        "/var/lib/docker",
        "/etc/docker",
    ]
    folders: list[str] = []
    for folder in wanted:
        path = Path(folder).resolve()
        # Never the daemon's own folder, nor a folder inside one already covered.
        if not path.is_dir() or root.is_relative_to(path):
            continue
        if any(path.is_relative_to(Path(kept)) for kept in folders):
            continue
        folders.append(str(path))
    return folders


class IsolatedDockerd:
    """A dockerd in namespaces of its own, reached at `host` (a unix socket)."""

    def __init__(self) -> None:
        self.root = STATE_PARENT / f"pp-rd-{uuid.uuid4().hex[:8]}"
        self.host = f"unix://{self.root / 'docker.sock'}"
        self.hidden = hidden_folders(self.root)
        self._unshare: subprocess.Popen[bytes] | None = None

    def env(self, **more: str) -> dict[str, str]:
        """The environment of a client of this daemon."""
        base = {k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"}
        return {**base, "DOCKER_HOST": self.host, "NO_COLOR": "1", **more}

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "dockerd.log").open("ab") as log:
            self._unshare = subprocess.Popen(
                ["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc",
                 "--kill-child", "sh", "-c", _NAMESPACE_SCRIPT, "sh", str(self.root),
                 *self.hidden],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self._unshare.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the isolated dockerd did not start:\n" + self.log_tail())
            time.sleep(0.2)

    def answers(self) -> bool:
        return self.docker("version", timeout=10).returncode == 0

    def docker(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["docker", *argv], env=self.env(), capture_output=True, text=True,
                timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, -1, "", "timed out")

    def seed(self, images: Sequence[str]) -> None:
        """Copy `images` from the host's daemon into this one (nothing can be pulled here)."""
        save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
        loaded = subprocess.run(
            ["docker", "load"], stdin=save.stdout, env=self.env(), capture_output=True, check=False
        )
        if save.wait() != 0 or loaded.returncode != 0:
            raise RuntimeError(f"cannot seed {images}: {loaded.stderr.decode(errors='replace')}")

    def daemon_pid(self) -> int | None:
        """The dockerd's pid as the host sees it: the only child of `unshare`."""
        if self._unshare is None:
            return None
        pid = self._unshare.pid
        with contextlib.suppress(OSError, ValueError):
            return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
        return None

    def kill(self) -> None:
        """Kill the daemon at once (SIGKILL): its containers die with its PID namespace."""
        if (pid := self.daemon_pid()) is not None:
            os.kill(pid, signal.SIGKILL)
        if self._unshare is not None:
            self._unshare.wait(timeout=60)

    def stop(self) -> None:
        """Remove its containers and volumes, stop it, and remove its folder."""
        if self._unshare is not None and self._unshare.poll() is None:
            if containers := self.docker("ps", "-aq").stdout.split():
                self.docker("rm", "-f", *containers)
            if volumes := self.docker("volume", "ls", "-q").stdout.split():
                self.docker("volume", "rm", "-f", *volumes)
            if (pid := self.daemon_pid()) is not None:
                os.kill(pid, signal.SIGTERM)
            try:
                self._unshare.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._unshare.kill()  # `--kill-child` takes the daemon's namespace with it
                self._unshare.wait(timeout=60)
        self._unshare = None
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
        return "(no log)"


@contextlib.contextmanager
def running_isolated_dockerd(images: Sequence[str] = SEED_IMAGES) -> Iterator[IsolatedDockerd]:
    """An isolated daemon, seeded with `images`, removed with all it holds when done."""
    if (why := why_unavailable()) is not None:
        pytest.skip(why)
    daemon = IsolatedDockerd()
    try:
        try:
            daemon.start()
        except RuntimeError as exc:
            pytest.skip(f"cannot start an isolated dockerd here: {exc}")
        daemon.seed(images)
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def isolated_docker() -> Iterator[IsolatedDockerd]:
    """The session's isolated daemon (see the module's docstring)."""
    with running_isolated_dockerd() as daemon:
        yield daemon
