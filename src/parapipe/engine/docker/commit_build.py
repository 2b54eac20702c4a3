"""`image.caches` on Docker's legacy builder: `prepare` and `setup` run in a container, and
`docker commit` makes their layer.

`RUN --mount=type=cache` needs BuildKit. Where no client builds with it (a 28.x client without
buildx, `DOCKER_BUILDKIT=0`), the commands run in `docker run` with each cache mounted as the
named volume steps' `caches` use, so what they write there persists between builds and never
lands in the image. Everything else (base, CA, env, the source, a delta) is built by the legacy
builder as usual.

The committed image's config is what the Dockerfile build would give: the container runs with
`--entrypoint ""`, no `-e`, `-w` or `-u`, and only the labels its image already has; `--change`
puts the image's ENTRYPOINT and CMD back (and adds the inputs label). A base with neither keeps
the container's command as its CMD: `docker commit` cannot clear it.

Commits are not in the layer cache, so the prepare stage is tagged by the content hash of its
inputs (`ImagePlan.prepare_tag`) and reused while that tag exists: a source edit does not run
`prepare` again.
"""

from __future__ import annotations

import json
import secrets
import shlex
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Final

import anyio

from parapipe.engine import api, process
from parapipe.engine.api import CacheVolume, LineSink
from parapipe.engine.build_context import (
    failed_command,
    prepare_command,
    setup_command,
    stage_failure,
)
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import images, stages
from parapipe.engine.docker.dockerfile import assignments
from parapipe.engine.docker.images import LEGACY
from parapipe.errors import EngineError, ImageBuildFailed, ParapipeError
from parapipe.model import ImagePlan

QUERY_TIMEOUT: Final = 60.0  # inspect / rm / rmi on a busy daemon
COMMIT_TIMEOUT: Final = 600.0  # writing a large layer (a venv, a toolchain) on a busy disk
CLEANUP_TIMEOUT: Final = 30.0
UNPREPARED_SUFFIX: Final = "-unprepared"  # in the prepare stage's tag before its commands ran

EnsureVolume = Callable[[CacheVolume], Awaitable[None]]


@dataclass(frozen=True)
class ImageCommand:
    """An image's ENTRYPOINT and CMD as its config holds them (None: not set)."""

    entrypoint: list[str] | None
    cmd: list[str] | None


def cache_volumes(plan: ImagePlan) -> tuple[CacheVolume, ...]:
    """`image.caches` as the volumes steps' `caches` of the same names mount."""
    return api.cache_volumes(plan.pipeline, dict(sorted(plan.caches.items())))


def prepare_script(plan: ImagePlan) -> str:
    """The prepare commands as one `sh -c` script: each as the Dockerfile's RUN runs it (with
    `image.prepare.env` for it alone), stopping at the first that fails."""
    commands = enumerate(plan.prepare, start=1)
    return _chained(prepare_command(number, c, plan.prepare_env) for number, c in commands)


def setup_script(plan: ImagePlan) -> str:
    return _chained(setup_command(number, c) for number, c in enumerate(plan.setup, start=1))


def _chained(commands: Iterable[Sequence[str]]) -> str:
    return " && ".join(shlex.join(argv) for argv in commands)


def stage_run_argv(binary: str, plan: ImagePlan, name: str, image: str, script: str) -> list[str]:
    """`docker run` of `script` in a container of `image`, with `image.caches` mounted; labelled
    only with the pipeline's image labels, which the image has already, so that the commit's
    labels are the image's own."""
    argv = argvs.container_argv(binary, "run", name, plan.labels)
    for cache in cache_volumes(plan):
        argv += ["-v", f"{cache.name}:{cache.path}"]
    return [*argv, "--entrypoint", "", image, "sh", "-c", script]


def commit_changes(command: ImageCommand, labels: Mapping[str, str]) -> list[str]:
    """The `docker commit --change` instructions that give the committed image the config of
    the image its container ran: ENTRYPOINT (which also clears the container's CMD when the
    image has none), then CMD, then `labels`."""
    changes = []
    if command.entrypoint:
        changes.append("ENTRYPOINT " + json.dumps(command.entrypoint))
    if command.cmd is not None:
        changes.append("CMD " + json.dumps(command.cmd))
    if labels:
        changes.append("LABEL " + assignments(labels))
    return changes


def parse_image_command(answer: str) -> ImageCommand:
    """`argv.image_command_argv`'s answer: the ENTRYPOINT and CMD as JSON, a line each."""
    lines = answer.strip().splitlines()
    if len(lines) != 2:
        raise ValueError(f"expected two lines, got {len(lines)}")
    entrypoint, cmd = (_string_list(json.loads(line)) for line in lines)
    return ImageCommand(entrypoint=entrypoint, cmd=cmd)


def _string_list(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        raise ValueError(f"not a list of strings: {value!r}")
    return value


def build_container_name(pipeline: str, stage: str) -> str:
    """`parapipe-<pipeline>.build-<stage>-<random>`: never a step's, a pooled one's or a holder's
    name, and two builds of the same pipeline at once do not meet."""
    return argvs.valid_name(f"parapipe-{pipeline}.build-{stage}-{secrets.token_hex(4)}")


async def build_pipeline_image(
    program: process.Program, plan: ImagePlan, log: LineSink, ensure_volume: EnsureVolume
) -> str:
    """Build the pipeline image `plan.tag` with the legacy builder, prepare and setup committed
    from containers with `image.caches` mounted; its id."""
    if not plan.source_tag:
        raise ValueError("the run-and-commit build needs the plan's source stage")
    for cache in cache_volumes(plan):
        await ensure_volume(cache)
    if await images.find_image(program, plan.source_tag) is None:
        if plan.prepare and plan.delta is None:
            await _prepared(program, plan, log)
            text = stages.prepared_source_dockerfile(plan)
            source = replace(plan, tag=plan.source_tag)
            await images.build_dockerfile(program, source, LEGACY, log, text, with_source=True)
        else:
            await images.build_source_stage(program, plan, LEGACY, log)
    if not plan.setup:
        return await images.build_setup_stage(program, plan, LEGACY, log)
    return await _run_and_commit(
        program,
        plan,
        "setup",
        plan.source_tag,
        setup_script(plan),
        plan.tag,
        plan.inputs_label,
        log,
    )


async def _prepared(program: process.Program, plan: ImagePlan, log: LineSink) -> None:
    """The prepare stage `plan.prepare_tag`: reused when it exists, else built up to its
    commands, which then run in a container that is committed."""
    if await images.find_image(program, plan.prepare_tag) is not None:
        log(f"image: prepare stage {plan.prepare_tag} already built; not running prepare")
        return
    # Its own tag per build: another build of the same stage must not remove it under this one.
    unprepared = replace(plan, tag=f"{plan.prepare_tag}{UNPREPARED_SUFFIX}-{secrets.token_hex(4)}")
    text = stages.unprepared_dockerfile(plan)
    try:
        await images.build_dockerfile(program, unprepared, LEGACY, log, text, with_source=False)
        script = prepare_script(plan)
        await _run_and_commit(
            program, plan, "prepare", unprepared.tag, script, plan.prepare_tag, {}, log
        )
    finally:
        # The committed image keeps it as its parent and only the tag goes; when prepare failed,
        # the image goes with the legacy builder's layers under it: nothing dangles.
        with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True), suppress(ParapipeError):
            await process.capture(
                program, argvs.image_remove_argv(program.binary, [unprepared.tag])
            )


async def _run_and_commit(
    program: process.Program,
    plan: ImagePlan,
    stage: str,
    image: str,
    script: str,
    tag: str,
    labels: Mapping[str, str],
    log: LineSink,
) -> str:
    """Run `script` in a container of `image` with the caches mounted and commit it as `tag`
    when it passed; the container goes whatever happens. The committed image's id."""
    command = await _image_command(program, image)
    name = build_container_name(plan.pipeline, stage)
    failed: tuple[str, int, int] | None = None

    def watch(line: str) -> None:
        nonlocal failed
        failed = stage_failure(line) or failed
        log(line)

    try:
        log(f"parapipe: {stage} runs in container {name} from {image}")
        argv = stage_run_argv(program.binary, plan, name, image, script)
        code, tail = await process.stream(program, argv, watch)
        if code != 0:
            if (message := failed_command(plan, failed)) is not None:
                raise ImageBuildFailed(message)
            raise ImageBuildFailed(f"building image {tag} failed: {process.error_line(tail)}")
        changes = commit_changes(command, labels)
        commit = argvs.commit_argv(program.binary, name, tag, changes)
        committed = await process.query(program, commit, COMMIT_TIMEOUT)
        if committed.code != 0:
            raise ImageBuildFailed(f"cannot commit the {stage} of image {tag}: {committed.problem}")
        image_id = argvs.normalized_image_id(committed.out)
        log(f"parapipe: {stage} committed as {tag} ({image_id})")
        return image_id
    finally:
        # Cancelled or failed: `spawn` has killed the CLI by now, so it cannot create the
        # container after this removes it.
        with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True), suppress(ParapipeError):
            await process.capture(program, argvs.remove_argv(program.binary, [name]))


async def _image_command(program: process.Program, image: str) -> ImageCommand:
    argv = argvs.image_command_argv(program.binary, image)
    answer = await process.query(program, argv, QUERY_TIMEOUT)
    if answer.code != 0:
        raise EngineError(f"{program.name}: cannot inspect {image}: {answer.problem}")
    try:
        return parse_image_command(answer.out)
    except ValueError as exc:
        raise EngineError(
            f"{program.name}: unreadable ENTRYPOINT or CMD of {image}: {exc}"
        ) from exc
