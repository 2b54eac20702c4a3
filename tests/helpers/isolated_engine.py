"""A second Docker daemon, or a Podman service, that shares nothing with the host but a socket:
a remote engine, here.

A privileged container cannot start on our machines, so the engine gets namespaces instead:
`unshare --mount --net --pid` runs Debian's dockerd 20.10 (or `podman system service`) as the
first process of its own PID namespace (when it ends, the kernel ends its containerd, shims and
containers with it), in a network namespace of its own (its bridge and addresses are not the
host's; no iptables rules), and in a mount namespace where a tmpfs covers every host folder a
run uses: the temp folder (where the tests' projects and parapipe's state live), /work, the home
folders, and also /run, /var/lib/docker, /etc/docker, /var/lib/containers and /var/lib/cni, so
it can find neither the host engine's socket, data, config or network state, nor the host's
containerd. A bind mount of a host path there shows an empty folder (dockerd) or fails
(podman) instead of silently working. Its data, run state and socket are in one folder of its
own on the real disk (/var/tmp), which the host reaches: the socket is its only door.

`isolated_docker` and `isolated_podman` are the session's, started once, seeded with the test
images by `save | load`, and removed at the end with everything in them.
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

# $1: the engine's own folder, $2: the engine (docker, podman); the rest: folders to hide.
_NAMESPACE_SCRIPT: Final = """set -e
root=$1; engine=$2; shift 2
for folder in "$@"; do mount -t tmpfs -o size=64m parapipe-isolated "$folder"; done
ip link set lo up
if [ "$engine" = podman ]; then
  exec podman --root "$root/storage" --runroot "$root/run" system service --time=0 \\
    "unix://$root/engine.sock"
fi
echo '{}' > "$root/daemon.json"
exec dockerd --config-file "$root/daemon.json" --data-root "$root/data" \\
  --exec-root "$root/exec" --pidfile "$root/dockerd.pid" -H "unix://$root/engine.sock" \\
  --iptables=false --ip-masq=false
"""
_HIDDEN: Final = (
    "/tmp",
    "/work",
    "/root",
    "/home",
    "/run",
    "/var/lib/docker",
    "/etc/docker",
    "/var/lib/containers",
    "/var/lib/cni",
)
# The variable that points each engine's client at a service.
HOST_VARIABLE: Final = {"docker": "DOCKER_HOST", "podman": "CONTAINER_HOST"}


def why_unavailable(engine: str) -> str | None:
    """Why an isolated `engine` cannot run here, or None."""
    if os.geteuid() != 0:
        return f"an isolated {engine} needs root (namespaces, mounts)"
    # dockerd 20.10 (Debian's docker.io) starts a containerd of its own under its exec root.
    server = {"docker": ("dockerd", "docker.io"), "podman": ("podman", "podman")}[engine]
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2"), server):
        if shutil.which(tool) is None:
            return f"an isolated {engine} needs `{tool}` ({package}), not installed here"
    return None


def hidden_folders(root: Path) -> list[str]:
    """The host folders covered by a tmpfs in the engine's mount namespace."""
    folders: list[str] = []
    for folder in (tempfile.gettempdir(), str(Path.cwd()), *_HIDDEN):
        path = Path(folder).resolve()
        # Never the engine's own folder, nor a folder inside one already covered.
        if not path.is_dir() or root.is_relative_to(path):
            continue
        if any(path.is_relative_to(Path(kept)) for kept in folders):
            continue
        folders.append(str(path))
    return folders


class IsolatedEngine:
    """dockerd or a podman service in namespaces of its own, reached at `host` (a unix socket)."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.root = STATE_PARENT / f"pp-{engine[0]}-{uuid.uuid4().hex[:8]}"
        self.host = f"unix://{self.root / 'engine.sock'}"
        self.hidden = hidden_folders(self.root)
        self._unshare: subprocess.Popen[bytes] | None = None

    @property
    def container_configs(self) -> str:
        """Where this engine writes its containers' configs (a glob)."""
        if self.engine == "podman":
            return str(self.root / "storage/overlay-containers/*/userdata/*.json")
        return str(self.root / "data/containers/*/*.json")

    def env(self, **more: str) -> dict[str, str]:
        """The environment of a client of this engine."""
        unset = ("DOCKER_CONTEXT", "CONTAINER_CONNECTION")
        base = {k: v for k, v in os.environ.items() if k not in unset}
        return {**base, HOST_VARIABLE[self.engine]: self.host, "NO_COLOR": "1", **more}

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "engine.log").open("ab") as log:
            self._unshare = subprocess.Popen(
                ["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc",
                 "--kill-child", "sh", "-c", _NAMESPACE_SCRIPT, "sh", str(self.root),
                 self.engine, *self.hidden],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self._unshare.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the isolated {self.engine} did not start:\n{self.log_tail()}")
            time.sleep(0.2)

    def answers(self) -> bool:
        return self.client("version", timeout=10).returncode == 0

    def client(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`docker ...` or `podman ...` against this engine."""
        try:
            return subprocess.run(
                [self.engine, *argv], env=self.env(), capture_output=True, text=True,
                timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, -1, "", "timed out")

    def seed(self, images: Sequence[str]) -> None:
        """Copy `images` from the host's engine into this one (nothing can be pulled here)."""
        host_env = {k: v for k, v in os.environ.items() if k != HOST_VARIABLE[self.engine]}
        save = subprocess.Popen(
            [self.engine, "save", *images], stdout=subprocess.PIPE, env=host_env
        )
        loaded = subprocess.run(
            [self.engine, "load"], stdin=save.stdout, env=self.env(), capture_output=True,
            check=False,
        )  # fmt: skip
        if save.wait() != 0 or loaded.returncode != 0:
            raise RuntimeError(f"cannot seed {images}: {loaded.stderr.decode(errors='replace')}")

    def server_pid(self) -> int | None:
        """The engine's pid as the host sees it: the only child of `unshare`."""
        if self._unshare is None:
            return None
        pid = self._unshare.pid
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
        return None

    def kill(self) -> None:
        """Kill the engine at once (SIGKILL): its containers die with its PID namespace."""
        if (pid := self.server_pid()) is not None:
            os.kill(pid, signal.SIGKILL)
        if self._unshare is not None:
            self._unshare.wait(timeout=60)

    def stop(self) -> None:
        """Remove its containers and volumes, stop it, and remove its folder."""
        if self._unshare is not None and self._unshare.poll() is None:
            if containers := self.client("ps", "-aq").stdout.split():
                self.client("rm", "-f", *containers)
            if volumes := self.client("volume", "ls", "-q").stdout.split():
                self.client("volume", "rm", "-f", *volumes)
            if (pid := self.server_pid()) is not None:
                os.kill(pid, signal.SIGTERM)
            try:
                self._unshare.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._unshare.kill()  # `--kill-child` takes the engine's namespace with it
                self._unshare.wait(timeout=60)
        self._unshare = None
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "engine.log").read_text(errors="replace")[-3000:]
        return "(no log)"


@contextlib.contextmanager
def running_isolated(engine: str, images: Sequence[str] = SEED_IMAGES) -> Iterator[IsolatedEngine]:
    """An isolated `engine`, seeded with `images`, removed with all it holds when done."""
    if (why := why_unavailable(engine)) is not None:
        pytest.skip(why)
    isolated = IsolatedEngine(engine)
    try:
        try:
            isolated.start()
        except RuntimeError as exc:
            pytest.skip(f"cannot start an isolated {engine} here: {exc}")
        isolated.seed(images)
        yield isolated
    finally:
        isolated.stop()


@pytest.fixture(scope="session")
def isolated_docker() -> Iterator[IsolatedEngine]:
    """The session's isolated dockerd (see the module's docstring)."""
    with running_isolated("docker") as daemon:
        yield daemon


@pytest.fixture(scope="session")
def isolated_podman() -> Iterator[IsolatedEngine]:
    """The session's isolated podman service; busybox only (podman's seeded images)."""
    with running_isolated("podman", images=(BUSYBOX,)) as service:
        yield service
