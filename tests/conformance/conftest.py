"""Which engines the conformance suite can run on here, and why not the others.

An engine that cannot be reached is skipped with the reason, never passed: Docker needs its
daemon and the seeded busybox; Podman needs `podman`, busybox in its own storage and a runtime
that can start a container here (all from scripts/setup; see tests/helpers/podman.py); Dagger needs an open session (`dagger run`) or a `dagger` CLI whose engine
answers the same probe `--engine auto` uses. `docker-isolated` is Docker through `DOCKER_HOST`
at a daemon that shares nothing with the host but its socket, `podman-isolated` Podman through
`CONTAINER_HOST` at such a service (tests/helpers/isolated_engine.py): remote engines, as far
as this machine can have them.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from typing import Final

import anyio
import pytest

from parapipe.engine.dagger import probe as dagger_probe
from parapipe.errors import EngineUnavailable
from tests.helpers.docker import BUSYBOX
from tests.helpers.isolated_engine import IsolatedEngine
from tests.helpers.podman import why_podman_cannot_run

ENGINES = ("docker", "podman", "dagger", "docker-isolated", "podman-isolated")
ISOLATED: Final = {"docker-isolated": "isolated_docker", "podman-isolated": "isolated_podman"}


@functools.cache
def why_unreachable(engine: str) -> str | None:
    """Why the suite cannot run on `engine` here, or None when it can."""
    if engine == "dagger":
        return _dagger_unreachable()
    if engine == "podman":
        return why_podman_cannot_run()
    if shutil.which(engine) is None:
        return f"{engine} is not installed (scripts/setup installs it)"
    if _quietly(engine, "info") != 0:
        return f"`{engine} info` failed: {engine} does not answer here"
    if _quietly(engine, "image", "inspect", BUSYBOX) != 0:
        return f"{BUSYBOX} is not in {engine}'s images (scripts/setup puts it there)"
    return None


def _dagger_unreachable() -> str | None:
    target = dagger_probe.find_target(download=False)
    if target is None:
        return (
            "Dagger is not reachable here: no Dagger session (DAGGER_SESSION_PORT) and no"
            " `dagger` CLI on PATH; run under `dagger run pytest tests/conformance` to include it"
        )
    try:
        anyio.run(dagger_probe.probe, target)
    except EngineUnavailable as exc:
        return f"Dagger is not reachable here: {exc}"
    return None


def _quietly(*argv: str) -> int:
    try:
        return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode
    except subprocess.TimeoutExpired:
        return -1


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine's name; for `docker-isolated`, "docker" with `DOCKER_HOST` at that daemon
    (and so for Podman)."""
    name: str = request.param
    if name in ISOLATED:
        isolated: IsolatedEngine = request.getfixturevalue(ISOLATED[name])
        for variable, value in isolated.env().items():
            monkeypatch.setenv(variable, value)
        for variable in ("DOCKER_CONTEXT", "CONTAINER_CONNECTION"):
            monkeypatch.delenv(variable, raising=False)
        return isolated.engine
    why = why_unreachable(name)
    if why is not None:
        pytest.skip(why)
    return name
