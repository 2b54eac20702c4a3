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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread

from parapipe.errors import ImageBuildFailed
from parapipe.model import ImagePlan

# Where `write_build_context` puts things inside the build context.
CONTEXT_SOURCE: Final = "source"
CONTEXT_CA_BUNDLE: Final = "ca-certificates.crt"
CONTEXT_PREPARE: Final = "prepare"  # only the files `image.prepare` matched
CONTEXT_DELTA: Final = "delta"  # a source-stage delta: only the changed files

# `$0` is `parapipe-<stage>`: the marker names the stage ("setup" or "prepare").
_SETUP_SCRIPT: Final = (
    "printf '$ %s\\n' \"$2\"; "
    'sh -ec "$2" || { status=$?; '
    'printf \'parapipe: %s command %s failed with exit %d\\n\' "${0#parapipe-}" "$1" "$status"; '
    'exit "$status"; }'
)
_STAGE_FAILURE: Final = re.compile(
    r"parapipe: (setup|prepare) command (\d+) failed with exit (\d+)\s*$"
)


def setup_command(number: int, command: str, stage: str = "setup") -> list[str]:
    """The argv that runs command `number` of the image's `stage` ("setup" or "prepare")."""
    return ["sh", "-c", _SETUP_SCRIPT, f"parapipe-{stage}", str(number), command]


def prepare_command(number: int, command: str, env: Mapping[str, str]) -> list[str]:
    """The argv of prepare command `number`, with `image.prepare.env` set for it alone."""
    assignments = [f"{name}={value}" for name, value in env.items()]
    wrapped = setup_command(number, command, "prepare")
    return ["env", *assignments, *wrapped] if assignments else wrapped


def setup_failure(line: str) -> tuple[int, int] | None:
    """`(setup command number, exit code)` when `line` is the marker of a failed setup command."""
    found = stage_failure(line)
    return (found[1], found[2]) if found and found[0] == "setup" else None


def stage_failure(line: str) -> tuple[str, int, int] | None:
    """`(stage, command number, exit code)` when `line` marks a failed setup or prepare command."""
    found = _STAGE_FAILURE.search(line)
    return (found[1], int(found[2]), int(found[3])) if found else None


def failed_command(plan: ImagePlan, failure: tuple[str, int, int] | None) -> str | None:
    """The one-line error for a failed setup or prepare command, or None when unknown."""
    if failure is None:
        return None
    stage, number, status = failure
    commands = plan.prepare if stage == "prepare" else plan.setup
    if not 1 <= number <= len(commands):
        return None
    lines = commands[number - 1].strip().splitlines() or [""]
    shown = lines[0] + (" …" if len(lines) > 1 else "")
    return f"{stage} command {number} `{shown}` failed with exit {status}"


async def stage_build_context(plan: ImagePlan, context: Path) -> None:
    """`write_build_context` off the event loop; a file that cannot be copied fails the image."""
    try:
        await anyio.to_thread.run_sync(write_build_context, plan, context)
        await anyio.to_thread.run_sync(write_prepare_files, plan, context)
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
    _place_files(plan.source, plan.files, context / CONTEXT_SOURCE)
    if plan.ca_bundle is not None:
        bundle = context / CONTEXT_CA_BUNDLE
        shutil.copyfile(plan.ca_bundle, bundle)
        bundle.chmod(0o644)


def write_prepare_files(plan: ImagePlan, context: Path) -> None:
    """The files `image.prepare` matched, alone in their own folder, so that the layer copying
    them changes only when they do. Hard links where possible, as the source's."""
    if not plan.prepare:
        return
    _place_files(plan.source, plan.prepare_files, context / CONTEXT_PREPARE)


def _place_files(source: Path, paths: Iterable[str], root: Path) -> None:
    """`paths` under `source`, laid out under `root`: hard-linked when on the same filesystem
    (no copy), else copied; modes and symlinks kept."""
    root.mkdir(parents=True)
    for path in paths:
        original = source / path
        copy = root / path
        copy.parent.mkdir(parents=True, exist_ok=True)
        if original.is_symlink():
            os.symlink(os.readlink(original), copy)
            continue
        try:
            os.link(original, copy)
        except OSError:
            shutil.copy2(original, copy)


async def stage_delta_context(plan: ImagePlan, context: Path) -> None:
    """The build context of a source-stage delta: only the changed files, under `delta/`."""
    if plan.delta is None or not plan.delta.changed:
        return
    try:
        await anyio.to_thread.run_sync(
            _place_files, plan.source, plan.delta.changed, context / CONTEXT_DELTA
        )
    except OSError as exc:
        raise ImageBuildFailed(
            f"cannot copy {exc.filename or plan.source} into the build context:"
            f" {exc.strerror or exc}"
        ) from exc
