"""Images through the Docker and Podman clients: the base image found, pulled or built, and the
pipeline image built from its context."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread

from parapipe.engine import process
from parapipe.engine.api import LineSink
from parapipe.engine.build_context import (
    failed_command,
    stage_build_context,
    stage_delta_context,
    stage_failure,
)
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import buildkit, errors, stages
from parapipe.engine.docker.dockerfile import dockerfile_text
from parapipe.errors import EngineError, EngineUnavailable, ImageBuildFailed
from parapipe.model import DockerfileBuild, ImagePlan

QUERY_TIMEOUT: Final = 60.0  # inspect on a busy daemon
PROBE_TIMEOUT: Final = 5.0  # `buildx version`


@dataclass(frozen=True)
class BuildFlavour:
    """How to call `build` on this client: extra flags and environment."""

    flags: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    # `RUN --mount=type=cache` for `image.caches` (BuildKit, Buildah), and the client to build
    # the pipeline image with when it is not the one on PATH.
    cache_mounts: bool = False
    binary: str | None = None
    # `image.caches` without BuildKit: prepare and setup run in a container that is committed
    # (`commit_build`), the rest is built by this flavour's builder.
    run_and_commit: bool = False


BUILDKIT: Final = BuildFlavour(("--progress=plain",), {"DOCKER_BUILDKIT": "1"})
LEGACY: Final = BuildFlavour(("--force-rm",), {"DOCKER_BUILDKIT": "0"})


async def docker_flavour(program: process.Program) -> BuildFlavour:
    """BuildKit through buildx when the client has it, else the legacy builder.

    Without buildx, a recent client falls back to the legacy builder on its own, or refuses to
    build when DOCKER_BUILDKIT=1; asking for the builder explicitly gives the same behaviour
    everywhere. `--progress=plain` keeps BuildKit's output line by line; `--force-rm` stops the
    legacy builder leaving the container of a failed RUN behind.
    """
    wanted = os.environ.get("DOCKER_BUILDKIT", "").strip().lower()
    if wanted:
        buildkit = wanted not in ("0", "false")
    else:
        try:
            with anyio.fail_after(PROBE_TIMEOUT):
                probe = await process.capture(program, argvs.buildx_probe_argv(program.binary))
            buildkit = probe.code == 0
        except TimeoutError:
            buildkit = False
    return BUILDKIT if buildkit else LEGACY


async def pipeline_flavour(
    program: process.Program, plan: ImagePlan, flavour: BuildFlavour, log: LineSink
) -> BuildFlavour:
    """How to build a pipeline image with `image.caches`: with BuildKit's cache mounts through
    whichever client answers with BuildKit, else with the legacy builder and prepare and setup
    run in a container that is committed (said in the log)."""
    if not plan.caches:
        return flavour
    client = None
    if os.environ.get("DOCKER_BUILDKIT", "").strip().lower() not in ("0", "false"):
        client = await buildkit.buildkit_client(program, plan.base_id)
    if client is None:
        log(
            f"parapipe: no {program.name} client here builds with BuildKit; image.caches are"
            " mounted by running prepare and setup in a container and committing it"
        )
        return replace(LEGACY, run_and_commit=True)
    return replace(BUILDKIT, cache_mounts=True, binary=client)


async def find_image(program: process.Program, tag: str) -> str | None:
    answer = await process.query(program, argvs.image_id_argv(program.binary, tag), QUERY_TIMEOUT)
    if answer.code == 0:
        return argvs.normalized_image_id(answer.out) or None
    if errors.means_no_such_image(answer.problem):
        return None
    raise EngineError(f"{program.name}: cannot look up image {tag}: {answer.problem}")


async def local_or_pulled(program: process.Program, ref: str, log: LineSink) -> str:
    found = await find_image(program, ref)
    if found is not None:
        return found
    log(f"parapipe: {ref} is not available locally, pulling it")
    code, tail = await process.stream(program, argvs.pull_argv(program.binary, ref), log)
    found = await find_image(program, ref) if code == 0 else None
    if found is None:
        raise ImageBuildFailed(
            f"base image '{ref}' is not available locally and could not be pulled:"
            f" {process.error_line(tail)}"
        )
    return found


async def build_base(
    program: process.Program, build: DockerfileBuild, flavour: BuildFlavour, log: LineSink
) -> str:
    """`image.build`: the base image from the user's Dockerfile."""
    with tempfile.TemporaryDirectory(prefix="parapipe-base-") as scratch:
        iidfile = Path(scratch, "iid")
        argv = argvs.base_build_argv(program.binary, build, iidfile, flavour.flags)
        code, tail = await process.stream(program, argv, log, env=flavour.env)
        if code != 0:
            raise ImageBuildFailed(
                f"building the base image from {build.dockerfile} failed:"
                f" {process.error_line(tail)}"
            )
        return _read_image_id(iidfile, program.name)


async def build_pipeline_image(
    program: process.Program, plan: ImagePlan, flavour: BuildFlavour, log: LineSink
) -> str:
    """Build the pipeline image, tag it `plan.tag`, and return its id.

    With `plan.source_tag`, in two images: the source stage (unless it exists already), as a
    full copy or as `plan.delta`, then `setup` on it."""
    if flavour.binary is not None:
        program = replace(program, binary=flavour.binary)
    if not plan.source_tag:
        return await _in_scratch(program, plan, flavour, log, _build_whole)
    if await find_image(program, plan.source_tag) is None:
        await build_source_stage(program, plan, flavour, log)
    return await build_setup_stage(program, plan, flavour, log)


async def build_source_stage(
    program: process.Program, plan: ImagePlan, flavour: BuildFlavour, log: LineSink
) -> str:
    """The source stage `plan.source_tag`, as a full copy from the base or as `plan.delta`."""
    builder = _build_full_source if plan.delta is None else _build_delta_source
    return await _in_scratch(program, plan, flavour, log, builder)


async def build_setup_stage(
    program: process.Program, plan: ImagePlan, flavour: BuildFlavour, log: LineSink
) -> str:
    """The pipeline image: `setup` on the source stage, which exists."""
    return await _in_scratch(program, plan, flavour, log, _build_setup)


async def build_dockerfile(
    program: process.Program,
    plan: ImagePlan,
    flavour: BuildFlavour,
    log: LineSink,
    dockerfile_text: str,
    *,
    with_source: bool,
) -> str:
    """`dockerfile_text` built and tagged `plan.tag`, in a context laid out by
    `write_build_context`: with the source, or with only the CA and the files prepare gets."""

    async def builder(
        program: process.Program,
        plan: ImagePlan,
        flavour: BuildFlavour,
        scratch: Path,
        log: LineSink,
    ) -> str:
        context = scratch / "context"
        await stage_build_context(plan if with_source else replace(plan, files=()), context)
        return await _build(program, plan, flavour, context, dockerfile_text, scratch, log)

    return await _in_scratch(program, plan, flavour, log, builder)


_Builder = Callable[[process.Program, ImagePlan, BuildFlavour, Path, LineSink], Awaitable[str]]


async def _in_scratch(
    program: process.Program,
    plan: ImagePlan,
    flavour: BuildFlavour,
    log: LineSink,
    builder: _Builder,
) -> str:
    """Run `builder` with a fresh scratch folder, removed afterwards."""
    scratch = tempfile.TemporaryDirectory(prefix="parapipe-build-")
    try:
        return await builder(program, plan, flavour, Path(scratch.name), log)
    finally:
        # The copy of a large tree takes a while to delete: not on the event loop.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(scratch.cleanup)


async def _build_whole(
    program: process.Program, plan: ImagePlan, flavour: BuildFlavour, scratch: Path, log: LineSink
) -> str:
    """The pipeline image in one build (engines asked for no source stage)."""
    return await _build_from_base(program, plan, plan, flavour, scratch, log, dockerfile_text)


async def _build_full_source(
    program: process.Program, plan: ImagePlan, flavour: BuildFlavour, scratch: Path, log: LineSink
) -> str:
    source = replace(plan, tag=plan.source_tag)
    return await _build_from_base(
        program, plan, source, flavour, scratch, log, stages.source_dockerfile
    )


async def _build_from_base(
    program: process.Program,
    plan: ImagePlan,
    built: ImagePlan,
    flavour: BuildFlavour,
    scratch: Path,
    log: LineSink,
    dockerfile: Callable[..., str],
) -> str:
    """Build `built` (the image or its source stage) from the base with the whole source as
    context; BuildKit needs the base by a name it can start `FROM`."""
    context = scratch / "context"
    await stage_build_context(plan, context)
    if flavour.cache_mounts and flavour.binary is not None:
        async with buildkit.base_reference(program, plan.base_id) as base:
            text = dockerfile(plan, cache_mounts=True, base=base)
            return await _build(program, built, flavour, context, text, scratch, log)
    text = dockerfile(plan, cache_mounts=flavour.cache_mounts)
    return await _build(program, built, flavour, context, text, scratch, log)


async def _build_delta_source(
    program: process.Program, plan: ImagePlan, flavour: BuildFlavour, scratch: Path, log: LineSink
) -> str:
    context = scratch / "context"
    await anyio.to_thread.run_sync(context.mkdir)
    await stage_delta_context(plan, context)
    text = stages.delta_dockerfile(plan)
    return await _build(
        program, replace(plan, tag=plan.source_tag), flavour, context, text, scratch, log
    )


async def _build_setup(
    program: process.Program, plan: ImagePlan, flavour: BuildFlavour, scratch: Path, log: LineSink
) -> str:
    context = scratch / "context"
    await anyio.to_thread.run_sync(context.mkdir)
    text = stages.setup_dockerfile(plan, cache_mounts=flavour.cache_mounts)
    return await _build(program, plan, flavour, context, text, scratch, log)


async def _build(
    program: process.Program,
    plan: ImagePlan,
    flavour: BuildFlavour,
    context: Path,
    dockerfile_text: str,
    scratch: Path,
    log: LineSink,
) -> str:
    """Build `dockerfile_text` in `context`, tagged `plan.tag`; the image's id."""
    dockerfile = context / argvs.CONTEXT_DOCKERFILE
    iidfile = scratch / "iid"
    await anyio.to_thread.run_sync(dockerfile.write_text, dockerfile_text)
    failed: tuple[str, int, int] | None = None

    def watch(line: str) -> None:
        nonlocal failed
        failed = stage_failure(line) or failed
        log(line)

    argv = argvs.build_argv(program.binary, context, plan.tag, iidfile, flavour.flags)
    code, tail = await process.stream(program, argv, watch, env=flavour.env)
    if code != 0 and errors.means_storage_race(process.error_line(tail)):
        log("parapipe: an image was removed under the build's cache check; building again")
        code, tail = await process.stream(program, argv, watch, env=flavour.env)
    if code != 0:
        if (message := failed_command(plan, failed)) is not None:
            raise ImageBuildFailed(message)
        raise ImageBuildFailed(f"building image {plan.tag} failed: {process.error_line(tail)}")
    return _read_image_id(iidfile, program.name)


async def entrypoint(program: process.Program, image_id: str) -> str | None:
    """The image's ENTRYPOINT as JSON (`null` or `[]` when it has none); None when it cannot be
    read."""
    argv = argvs.entrypoint_argv(program.binary, image_id)
    try:
        answer = await process.query(program, argv, QUERY_TIMEOUT)
    except (EngineError, EngineUnavailable):
        return None
    return answer.out.strip() if answer.code == 0 else None


async def image_command(program: process.Program, image_id: str) -> list[str]:
    """What a container of `image_id` runs when given no command: its ENTRYPOINT, then its
    CMD. An `EngineError` when they cannot be read, or when the image has neither."""
    argv = argvs.image_command_argv(program.binary, image_id)
    answer = await process.query(program, argv, QUERY_TIMEOUT)
    if answer.code != 0:
        raise EngineError(
            f"{program.name}: cannot read the ENTRYPOINT and CMD of {image_id}: {answer.problem}"
        )
    command: list[str] = []
    for line in answer.out.strip().splitlines():
        try:
            part = json.loads(line)
        except ValueError as exc:
            raise EngineError(f"{program.name}: unreadable ENTRYPOINT or CMD: {line}") from exc
        if part is None:
            continue
        if not isinstance(part, list) or not all(isinstance(word, str) for word in part):
            raise EngineError(f"{program.name}: unreadable ENTRYPOINT or CMD: {line}")
        command += part
    if not command:
        raise EngineError(f"{program.name}: the image {image_id} has no ENTRYPOINT and no CMD")
    return command


def _read_image_id(iidfile: Path, engine: str) -> str:
    try:
        image_id = iidfile.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise EngineError(f"{engine}: the build succeeded but wrote no image id") from exc
    if not image_id:
        raise EngineError(f"{engine}: the build succeeded but wrote no image id")
    return image_id
