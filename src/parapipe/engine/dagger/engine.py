"""Dagger, through its Python SDK (`dagger-io`): the same pipeline image and steps, made by a
Dagger engine instead of a Docker daemon.

The pipeline image is a Dagger container built as the Docker engine's Dockerfile builds it (base,
labels, CA bundle, env, workdir, source, setup) and evaluated once before any step starts; its
ID is the image id the steps get. Each step loads that ID and runs the same step script with
`with_exec`, so every step starts from the one evaluated container. One connection, opened by
`session()` for the whole run, carries every step's queries.

Importing `dagger` takes about 0.9 s: only `engine.registry` imports this module, once Dagger is
chosen. The functions that build containers are pure (the SDK's objects are lazy until awaited),
so the chain a spec makes can be inspected without an engine.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import ClassVar, Final, TextIO

import anyio
import anyio.to_thread
import dagger
from dagger import dag

from parapipe.engine import endpoints
from parapipe.engine.api import Engine, LineSink, StepRun, cache_volume_name, step_command
from parapipe.engine.build_context import (
    CONTEXT_CA_BUNDLE,
    CONTEXT_PREPARE,
    CONTEXT_SOURCE,
    prepare_command,
    setup_command,
    stage_build_context,
)
from parapipe.engine.dagger import probe as dagger_probe
from parapipe.engine.dagger import services as dagger_services
from parapipe.engine.dagger.probe import DaggerTarget, one_line
from parapipe.engine.dagger.services import BoundService, bind
from parapipe.errors import (
    EngineError,
    EngineUnavailable,
    ImageBuildFailed,
    OutputError,
    SpecError,
    UsageError,
)
from parapipe.model import CA_BUNDLE_PATH, DockerfileBuild, ImagePlan, ImageSpec

DAGGER_LOG: Final = "dagger.log"  # Dagger's own progress, in the run's folder
ROOT: Final = "0:0"  # what `COPY` gives files in the Docker engine's image
MAX_LINE: Final = 64 * 1024  # longer output without a newline is passed on in pieces, as by Docker

# Runs a setup command with its stderr joined to stdout, so its log keeps the order the command
# wrote in, as the builders' logs do.
_JOINED_STDERR: Final = ["sh", "-c", 'exec "$@" 2>&1', "sh"]


def prepared_container(client: dagger.Client, plan: ImagePlan, context: Path) -> dagger.Container:
    """The pipeline image before its setup commands, in the order of the Docker engine's
    Dockerfile. `context` is laid out by `write_build_context` (the selected files, the CA)."""
    return with_source(client, configured_container(client, plan, context), plan, context)


def with_caches(
    client: dagger.Client, container: dagger.Container, plan: ImagePlan
) -> dagger.Container:
    """`image.caches` mounted (Dagger cache volumes, keyed like the Docker engines' volumes)
    for the prepare and setup commands; `without_caches` takes them out of the image."""
    for cache, path in sorted(plan.caches.items()):
        volume = client.cache_volume(cache_volume_name(plan.pipeline, cache))
        container = container.with_mounted_cache(path, volume)
    return container


def without_caches(container: dagger.Container, plan: ImagePlan) -> dagger.Container:
    for path in sorted(plan.caches.values()):
        container = container.without_mount(path)
    return container


def with_prepare_files(
    client: dagger.Client, container: dagger.Container, plan: ImagePlan, context: Path
) -> dagger.Container:
    """Only the files `image.prepare` matched, before its commands run."""
    files = client.host().directory(str(context / CONTEXT_PREPARE))
    return container.with_directory(plan.workdir, files, owner=ROOT)


def with_source(
    client: dagger.Client, container: dagger.Container, plan: ImagePlan, context: Path
) -> dagger.Container:
    source = client.host().directory(str(context / CONTEXT_SOURCE))
    return container.with_directory(plan.workdir, source, owner=ROOT)


def configured_container(client: dagger.Client, plan: ImagePlan, context: Path) -> dagger.Container:
    """The base with the labels, CA bundle, env and workdir: what prepare starts from."""
    container = client.load_container_from_id(dagger.ContainerID(plan.base_id))
    for name, value in plan.labels.items():
        container = container.with_label(name, value)
    if plan.ca_bundle is not None:
        bundle = client.host().file(str(context / CONTEXT_CA_BUNDLE))
        container = container.with_file(CA_BUNDLE_PATH, bundle, permissions=0o644, owner=ROOT)
    for name, value in plan.env.items():
        container = container.with_env_variable(name, value)
    return container.with_workdir(plan.workdir)


def setup_container(container: dagger.Container, number: int, command: str) -> dagger.Container:
    """`container` after setup command `number`; a failure is read from its exit code."""
    return container.with_exec(
        [*_JOINED_STDERR, *setup_command(number, command)], expect=dagger.ReturnType.ANY
    )


def prepare_container(
    container: dagger.Container, number: int, command: str, env: Mapping[str, str]
) -> dagger.Container:
    """`container` after prepare command `number`, run as the Docker engines run it."""
    return container.with_exec(
        [*_JOINED_STDERR, *prepare_command(number, command, env)], expect=dagger.ReturnType.ANY
    )


def step_container(
    client: dagger.Client, run: StepRun, services: Sequence[BoundService] = ()
) -> dagger.Container:
    """The step's command run on the evaluated pipeline image `run.image_id`, beside `services`."""
    container = client.load_container_from_id(dagger.ContainerID(run.image_id))
    # Dagger replays a cached exec whose inputs are all the same. The runner's PARAPIPE_RUN_ID
    # and PARAPIPE_ATTEMPT in `run.env` make every run's and every attempt's exec new, so the
    # step really runs each time, as `docker run` does.
    for name, value in run.env.items():
        container = container.with_env_variable(name, value)
    # A Dagger secret keeps the value out of the container's definition and its cache key, and
    # Dagger scrubs it from its own logs.
    for name, value in run.secrets.items():
        container = container.with_secret_variable(name, client.set_secret(name, value))
    for cache in run.caches:
        container = container.with_mounted_cache(cache.path, client.cache_volume(cache.name))
    for folder in run.inputs:
        # The needs' outputs, laid out like the workdir, merged into it as `docker cp` does.
        container = container.with_directory(
            run.workdir, client.host().directory(str(folder)), owner=ROOT
        )
    container = bind(container, services)  # each reachable by its name
    return container.with_workdir(run.workdir).with_exec(
        step_command(run.commands),
        # `docker run IMAGE ARGS` runs the image's entrypoint with ARGS; so does this.
        use_entrypoint=True,
        expect=dagger.ReturnType.ANY,
    )


def dockerfile_base(
    client: dagger.Client, build: DockerfileBuild, image: ImageSpec
) -> dagger.Container:
    """`image.build`: the base image built from the user's Dockerfile by Dagger."""
    try:
        dockerfile = build.dockerfile.relative_to(build.context)
    except ValueError:
        raise SpecError(
            f"the Dagger engine needs the Dockerfile inside the build context; {build.dockerfile}"
            f" is outside {build.context}",
            image.location,
        ) from None
    return (
        client.host()
        .directory(str(build.context))
        .docker_build(
            dockerfile=dockerfile.as_posix(),
            build_args=[
                dagger.BuildArg(name=name, value=value) for name, value in build.args.items()
            ],
        )
    )


def output_lines(text: str) -> list[str]:
    """`text` cut into lines as the Docker engine passes a container's output on."""
    pieces = text.split("\n")
    if pieces[-1] == "":
        pieces.pop()
    lines: list[str] = []
    for piece in pieces:
        piece = piece.removesuffix("\r")
        while len(piece) > MAX_LINE:
            lines.append(piece[:MAX_LINE])
            piece = piece[MAX_LINE:]
        lines.append(piece)
    return lines


class DaggerEngine(Engine):
    name: ClassVar[str] = "dagger"

    def __init__(self, target: DaggerTarget | None = None, *, checked: bool = False) -> None:
        """`target`: where the engine is (default: found now); `checked`: it already answered
        a probe, so `check` has nothing left to do."""
        found = target or dagger_probe.find_target(download=True)
        assert found is not None  # with download=True there is always somewhere to try
        self.target = found
        self._checked = checked
        self._open: tuple[dagger.Client, Path] | None = None  # the client and a scratch folder

    # -- the Engine interface ---------------------------------------------------------------

    async def check(self) -> None:
        if not self._checked:
            await dagger_probe.probe(self.target)
            self._checked = True

    def address(self) -> str | None:
        # The CLI the SDK starts reads the runner host itself: nothing to pass on.
        return endpoints.current(self.name).label()

    @asynccontextmanager
    async def session(self, run_dir: Path) -> AsyncIterator[None]:
        """One connection for the whole run. Dagger's own output (its progress, the SDK's log)
        goes to `dagger.log` in the run's folder, never over the live view."""
        with (
            (run_dir / DAGGER_LOG).open("a", encoding="utf-8", buffering=1) as log_file,
            _sdk_logging_to(log_file),
            _environment(self.target.sdk_env()),
            tempfile.TemporaryDirectory(prefix="parapipe-dagger-") as scratch,
        ):
            connection = AsyncExitStack()
            try:
                await connection.enter_async_context(
                    dagger.connection(dagger.Config(log_output=log_file))
                )
            except dagger.DaggerError as exc:
                kind, detail = dagger_probe.classify(exc)
                raise EngineUnavailable(
                    dagger_probe.failure_message(kind, detail, self.target)
                ) from exc
            try:
                with self.using(dag, Path(scratch)):
                    yield
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        await connection.aclose()
                    except dagger.DaggerError as exc:
                        # The steps are over and their results are real; only the log says it.
                        log_file.write(f"parapipe: closing the Dagger session failed: {exc}\n")

    async def resolve_base(self, image: ImageSpec, log: LineSink) -> str:
        client, _ = self._opened()
        if isinstance(image.origin, str):
            container = client.container().from_(image.origin)
            failure = f"base image '{image.origin}' could not be pulled by Dagger"
        else:
            container = dockerfile_base(client, image.origin, image)
            failure = f"building the base image from {image.origin.dockerfile} failed"
        try:
            evaluated = await container.sync()
            return await evaluated.id()
        except dagger.ExecError as exc:
            _log_outputs(log, exc.stdout, exc.stderr)
            raise ImageBuildFailed(f"{failure}: {one_line(exc.message)}") from exc
        except dagger.QueryError as exc:
            raise ImageBuildFailed(f"{failure}: {one_line(str(exc))}") from exc
        except dagger.DaggerError as exc:
            raise _engine_error(exc) from exc

    async def find_image(self, tag: str) -> str | None:
        # Dagger caches by content itself: building an unchanged image again costs nothing.
        return None

    async def build_image(self, plan: ImagePlan, log: LineSink) -> str:
        client, scratch = self._opened()
        context = Path(tempfile.mkdtemp(prefix="image-", dir=scratch)) / "context"
        await stage_build_context(plan, context)
        log(f"parapipe: building {plan.tag} with Dagger; its own log is {DAGGER_LOG}")
        try:
            container = with_caches(client, configured_container(client, plan, context), plan)
            if plan.prepare:
                container = with_prepare_files(client, container, plan, context)
                for number, command in enumerate(plan.prepare, start=1):
                    ran = prepare_container(container, number, command, plan.prepare_env)
                    container = await _run_stage(ran, "prepare", number, command, log)
            # Evaluated here, once: every step then starts from this same container.
            container = await with_source(client, container, plan, context).sync()
            for number, command in enumerate(plan.setup, start=1):
                ran = setup_container(container, number, command)
                container = await _run_stage(ran, "setup", number, command, log)
            return await without_caches(container, plan).id()
        except dagger.QueryError as exc:
            raise ImageBuildFailed(
                f"building image {plan.tag} failed: {one_line(str(exc))}"
            ) from exc
        except dagger.DaggerError as exc:
            raise _engine_error(exc) from exc

    async def run_step(self, run: StepRun, log: LineSink) -> int:
        client, _ = self._opened()
        async with dagger_services.running(client, run, log) as services:
            return await self._run_step(client, run, log, services)

    async def service_image(self, ref: str) -> str:
        return await dagger_services.image_id(self._opened()[0], ref)

    async def _run_step(
        self, client: dagger.Client, run: StepRun, log: LineSink, services: list[BoundService]
    ) -> int:
        try:
            done = await step_container(client, run, services).sync()
            code, stdout, stderr = await done.exit_code(), await done.stdout(), await done.stderr()
        except dagger.ExecError as exc:
            # `expect=ANY` still raises for exits 128-191 (a signal, as the shell reports it):
            # the step's command failed, not the engine.
            code, stdout, stderr = exc.exit_code, exc.stdout, exc.stderr
        except dagger.DaggerError as exc:
            raise EngineError(
                f"dagger could not run step {run.step!r}: {one_line(str(exc))}"
            ) from exc
        _log_outputs(log, stdout, stderr)
        if code == 0 and run.outputs:
            await _export_outputs(done, run)
        return code

    def shell_refusal(self) -> str | None:
        # `Container.terminal()` attaches to the terminal of the `dagger` CLI's own session
        # (`dagger call --interactive`); a connection opened from Python has none to give it.
        return (
            "not supported on dagger: the SDK's terminal() attaches only to the dagger CLI's"
            " own session, not to parapipe's connection; use --engine docker or podman"
        )

    async def remove_containers(self, run_id: str) -> None:
        # A step's container lives inside the Dagger engine and ends with its exec.
        return None

    async def remove_cache_volumes(self, pipeline: str) -> list[str]:
        raise UsageError(
            "Dagger keeps cache volumes in its engine, which prunes them with the rest of its"
            " cache: parapipe cannot remove them"
        )

    @contextmanager
    def using(self, client: dagger.Client, scratch: Path) -> Iterator[None]:
        """Run the engine's queries through `client`, with `scratch` for build contexts.
        `session()` passes the SDK's connected `dag`; tests pass a client of their own."""
        self._open = (client, scratch)
        try:
            yield
        finally:
            self._open = None

    def _opened(self) -> tuple[dagger.Client, Path]:
        if self._open is None:
            raise RuntimeError("the Dagger engine is used outside its session()")
        return self._open


async def _export_outputs(done: dagger.Container, run: StepRun) -> None:
    """Copy the step's outputs to the host. Dagger exports what a link points to, so a link is
    refused here rather than followed: outputs must be real files or folders on this engine."""
    assert run.outputs_dir is not None
    for output in run.outputs:
        path = posixpath.join(run.workdir, output)
        target = run.outputs_dir / output
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if await done.exists(
                path, expected_type=dagger.ExistsType.SYMLINK_TYPE, do_not_follow_symlinks=True
            ):
                raise OutputError(
                    f"output '{output}' of step {run.step!r} is a link; on the Dagger engine"
                    " outputs must be real files or folders"
                )
            if await done.exists(path, expected_type=dagger.ExistsType.DIRECTORY_TYPE):
                await done.directory(path).export(str(target))
            elif await done.exists(path, expected_type=dagger.ExistsType.REGULAR_TYPE):
                await done.file(path).export(str(target))
            else:
                raise OutputError(f"step {run.step!r} did not produce its output '{output}'")
        except dagger.DaggerError as exc:
            raise _engine_error(exc) from exc


async def _run_stage(
    ran: dagger.Container, stage: str, number: int, command: str, log: LineSink
) -> dagger.Container:
    """`ran` (a setup or prepare command) evaluated, its output logged, its failure raised."""
    try:
        done = await ran.sync()
        code, output = await done.exit_code(), await done.stdout()
    except dagger.ExecError as exc:
        code, output = exc.exit_code, exc.stdout + exc.stderr
    _log_outputs(log, output)
    if code != 0:
        raise ImageBuildFailed(
            f"{stage} command {number} `{_first_line(command)}` failed with exit {code}"
        )
    return done


def _log_outputs(log: LineSink, *outputs: str) -> None:
    for output in outputs:
        for line in output_lines(output):
            log(line)


def _engine_error(exc: dagger.DaggerError) -> EngineError:
    return EngineError(f"dagger: {one_line(str(exc))}")


def _first_line(command: str) -> str:
    lines = command.strip().splitlines() or [""]
    return lines[0] + (" …" if len(lines) > 1 else "")


@contextmanager
def _sdk_logging_to(log_file: TextIO) -> Iterator[None]:
    """Send the SDK's `logging` records (a version mismatch warning, say) to `log_file` instead
    of Python's last-resort handler, which writes them over the live view."""
    logger = logging.getLogger("dagger")
    handler = logging.StreamHandler(log_file)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(name)s: %(message)s"))
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set `variables` for as long as the session lasts: the SDK reads which CLI to run from the
    environment only."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
