"""The pipeline image's build context and setup commands, the same for every engine.

Docker and Podman build the image from a Dockerfile in this context; Dagger builds the same
layers from the same files. Each setup command runs in its own `sh -e`, announced like a step's
commands, and on failure prints a marker naming it: the builders (legacy, BuildKit, Buildah,
Dagger) all word their own error differently, the marker reads the same everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread

from parapipe.errors import ImageBuildFailed
from parapipe.model import ImagePlan

# Where `write_build_context` puts things inside the build context.
CONTEXT_SOURCE: Final = "source"
CONTEXT_CA_BUNDLE: Final = "ca-certificates.crt"

_SETUP_SCRIPT: Final = (
    "printf '$ %s\\n' \"$2\"; "
    'sh -ec "$2" || { status=$?; '
    'printf \'parapipe: setup command %s failed with exit %d\\n\' "$1" "$status"; '
    'exit "$status"; }'
)
_SETUP_FAILURE: Final = re.compile(r"parapipe: setup command (\d+) failed with exit (\d+)\s*$")


def setup_command(number: int, command: str) -> list[str]:
    """The argv that runs setup command `number` of the image."""
    return ["sh", "-c", _SETUP_SCRIPT, "parapipe-setup", str(number), command]


def setup_failure(line: str) -> tuple[int, int] | None:
    """`(setup command number, exit code)` when `line` is the marker of a failed setup command."""
    found = _SETUP_FAILURE.search(line)
    return (int(found[1]), int(found[2])) if found else None


async def stage_build_context(plan: ImagePlan, context: Path) -> None:
    """`write_build_context` off the event loop; a file that cannot be copied fails the image."""
    try:
        await anyio.to_thread.run_sync(write_build_context, plan, context)
    except OSError as exc:
        raise ImageBuildFailed(
            f"cannot copy {exc.filename or plan.source} into the build context:"
            f" {exc.strerror or exc}"
        ) from exc


def write_build_context(plan: ImagePlan, context: Path) -> None:
    """Lay out the build context: the selected files and the CA bundle.

    Files are hard-linked when the context is on the same filesystem as the source (no copy),
    else copied; modes and symlinks are kept. Blocking: run it in a worker thread.
    """
    source_root = context / CONTEXT_SOURCE
    source_root.mkdir(parents=True)
    for path in plan.files:
        original = plan.source / path
        copy = source_root / path
        copy.parent.mkdir(parents=True, exist_ok=True)
        if original.is_symlink():
            os.symlink(os.readlink(original), copy)
            continue
        try:
            os.link(original, copy)
        except OSError:
            shutil.copy2(original, copy)
    if plan.ca_bundle is not None:
        bundle = context / CONTEXT_CA_BUNDLE
        shutil.copyfile(plan.ca_bundle, bundle)
        bundle.chmod(0o644)
