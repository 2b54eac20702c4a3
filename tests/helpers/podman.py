"""Whether the Podman tests can run here: skipped only where podman cannot start a container at
all, never where it could but was not set up (that fails, naming scripts/setup)."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest

from parapipe.engine.docker import podman_setup
from tests.helpers.docker import BUSYBOX


def _quietly(*argv: str) -> tuple[int, str]:
    return podman_setup.run_quietly(argv)


@functools.cache
def why_podman_cannot_run() -> str | None:
    """Why the Podman tests skip here, or None when podman starts a container as it is set up.

    Fails the calling test when podman *could* run with another runtime or lower ulimits than
    its present defaults: that is a setup gap (`scripts/setup` writes the drop-in), not a host
    that cannot run Podman."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/setup installs it)"
    if _quietly("podman", "info", "--format", "{{.Version.Version}}")[0] != 0:
        return "`podman info` failed: podman does not answer here"
    if _quietly("podman", "image", "inspect", BUSYBOX)[0] != 0:
        return f"{BUSYBOX} is not in podman's images (scripts/setup puts it there)"
    code, said = _quietly("podman", "run", "--rm", "--pull=never", BUSYBOX, "true")
    if code == 0:
        return None
    found = podman_setup.probe(["podman"], BUSYBOX)
    if isinstance(found, podman_setup.NoWay):
        return found.why
    pytest.fail(
        f"podman cannot start a container as set up ({said.splitlines()[-1] if said else code}),"
        f" but it can with {found.describe()}: run scripts/setup to make that its default"
    )


def remove_buildah_cache_mounts(pipeline: str) -> None:
    """Remove Buildah's `RUN --mount=type=cache` folders of `pipeline`'s `image.caches`: Buildah
    keeps them by id (the cache volume's name) under /var/tmp/buildah-cache when run as root."""
    for folder in Path("/var/tmp/buildah-cache").glob(f"parapipe-cache-{pipeline}-*"):
        shutil.rmtree(folder, ignore_errors=True)
