"""Docker and Podman, driven through their command-line clients.

Podman's CLI takes the same commands and flags, so `PodmanEngine` only changes the binary, the
probe and the build flavour. Every command line comes from `argv`; this module runs them,
streams their output, and turns their failures into parapipe's errors.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

import anyio
import anyio.to_thread
from anyio.abc import ByteReceiveStream, Process

from parapipe.engine.api import CacheVolume, Engine, LineSink, StepRun
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import files as step_files
from parapipe.engine.docker import podman_setup
from parapipe.engine.docker import pool as docker_pool
from parapipe.errors import (
    EngineError,
    EngineUnavailable,
    ImageBuildFailed,
    OutputError,
    ParapipeError,
)
from parapipe.model import ImagePlan, ImageSpec, Prewarm

CHECK_TIMEOUT: Final = 5.0  # seconds for the engine to answer at all
QUERY_TIMEOUT: Final = 60.0  # inspect / ps / rm on a busy daemon
CLEANUP_TIMEOUT: Final = 30.0  # removing a container after a cancelled or failed step

# `docker run` exits with these when it, not the container, failed: 125 the daemon refused,
# 126 / 127 the entrypoint could not be run. A step's own command can exit with them too, so
# they only count as the engine's failure when the CLI also wrote an error of its own.
_RUN_FAILURE_CODES: Final = frozenset({125, 126, 127})

_MAX_LINE: Final = 64 * 1024  # longer output without a newline is passed on in pieces
_TAIL_LINES: Final = 40


@dataclass(frozen=True)
class BuildFlavour:
    """How to call `build` on this client: extra flags and environment."""

    flags: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None


class DockerEngine(Engine):
    name: ClassVar[str] = "docker"
    binary: ClassVar[str] = "docker"
    install_hint: ClassVar[str] = "install Docker (https://docs.docker.com/engine/install/)"
    start_hint: ClassVar[str] = "start it (sudo systemctl start docker, or scripts/start-engine)"

    def __init__(self) -> None:
        self._flavour: BuildFlavour | None = None
        self._volumes_ready: set[str] = set()  # cache volumes known to exist
        self._volumes_lock = anyio.Lock()
        self._pool: docker_pool.ContainerPool | None = None  # while a session is open

    # -- the Engine interface ---------------------------------------------------------------

    async def check(self) -> None:
        try:
            with anyio.fail_after(CHECK_TIMEOUT):
                answer = await self._capture(self.check_argv())
        except TimeoutError:
            raise EngineUnavailable(
                f"{self.name}: no daemon answered on {self.endpoint()} within"
                f" {CHECK_TIMEOUT:g} s; {self.start_hint}"
            ) from None
        if answer.returncode != 0:
            raise EngineUnavailable(self.unavailable_message(_text(answer.stderr).splitlines()))

    async def resolve_base(self, image: ImageSpec, log: LineSink) -> str:
        if isinstance(image.origin, str):
            return await self._local_or_pulled(image.origin, log)
        build = image.origin
        flavour = await self._build_flavour()
        with tempfile.TemporaryDirectory(prefix="parapipe-base-") as scratch:
            iidfile = Path(scratch, "iid")
            argv = argvs.base_build_argv(self.binary, build, iidfile, flavour.flags)
            code, tail = await self._stream(argv, log, env=flavour.env)
            if code != 0:
                raise ImageBuildFailed(
                    f"building the base image from {build.dockerfile} failed:"
                    f" {argvs.error_line(tail)}"
                )
            return _read_image_id(iidfile, self.name)

    async def find_image(self, tag: str) -> str | None:
        answer = await self._query(argvs.image_id_argv(self.binary, tag))
        if answer.returncode == 0:
            return argvs.normalized_image_id(_text(answer.stdout)) or None
        problem = argvs.error_line(_text(answer.stderr).splitlines())
        if _means_no_such_image(problem):
            return None
        raise EngineError(f"{self.name}: cannot look up image {tag}: {problem}")

    async def build_image(self, plan: ImagePlan, log: LineSink) -> str:
        flavour = await self._build_flavour()
        scratch = tempfile.TemporaryDirectory(prefix="parapipe-build-")
        try:
            context = Path(scratch.name, "context")
            iidfile = Path(scratch.name, "iid")
            await stage_build_context(plan, context)
            failed_setup: tuple[int, int] | None = None

            def watch(line: str) -> None:
                nonlocal failed_setup
                failed_setup = argvs.setup_failure(line) or failed_setup
                log(line)

            argv = argvs.build_argv(self.binary, context, plan.tag, iidfile, flavour.flags)
            code, tail = await self._stream(argv, watch, env=flavour.env)
            if code != 0:
                if failed_setup is not None and 1 <= failed_setup[0] <= len(plan.setup):
                    number, status = failed_setup
                    command = _first_line(plan.setup[number - 1])
                    raise ImageBuildFailed(
                        f"setup command {number} `{command}` failed with exit {status}"
                    )
                raise ImageBuildFailed(
                    f"building image {plan.tag} failed: {argvs.error_line(tail)}"
                )
            return _read_image_id(iidfile, self.name)
        finally:
            # The copy of a large tree takes a while to delete: not on the event loop.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(scratch.cleanup)

    def session(self, run_dir: Path) -> AbstractAsyncContextManager[None]:
        return self._pool_session(run_dir)

    def prewarm(self, request: Prewarm) -> None:
        if self._pool is not None:
            self._pool.request(request)

    async def run_step(self, run: StepRun, log: LineSink) -> int:
        pooled = await self._pool.take(run) if self._pool is not None else None
        if pooled is not None:
            code = await self._run_pooled(run, pooled, log)
            if code is not None:
                return code
        name = argvs.container_name(run.run_id, run.step, run.attempt)
        for cache in run.caches:
            await self._ensure_volume(cache)
        try:
            with _secret_env_file(run) as env_file:
                return await self._run_container(run, name, log, env_file)
        except BaseException:
            # Cancelled (fail-fast, Ctrl-C) or failed: `_spawn` has killed the CLI by now, so
            # it cannot create the container after this removes it.
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                await self._remove_quietly([name])
            raise

    async def remove_containers(self, run_id: str) -> None:
        listed = await self._query(argvs.list_run_containers_argv(self.binary, run_id))
        if listed.returncode != 0:
            problem = argvs.error_line(_text(listed.stderr).splitlines())
            raise EngineError(f"{self.name}: cannot list the run's containers: {problem}")
        containers = _text(listed.stdout).split()
        if not containers:
            return
        removed = await self._query(argvs.remove_argv(self.binary, containers))
        if removed.returncode == 0:
            return
        # `rm -f` also fails for a container that was removing itself (`--rm`) meanwhile;
        # only what is still there is a failure.
        again = await self._query(argvs.list_run_containers_argv(self.binary, run_id))
        if again.returncode != 0 or _text(again.stdout).split():
            problem = argvs.error_line(_text(removed.stderr).splitlines())
            raise EngineError(f"{self.name}: cannot remove the run's containers: {problem}")

    async def remove_cache_volumes(self, pipeline: str) -> list[str]:
        listed = await self._query(argvs.list_cache_volumes_argv(self.binary, pipeline))
        if listed.returncode != 0:
            problem = argvs.error_line(_text(listed.stderr).splitlines())
            raise EngineError(f"{self.name}: cannot list the cache volumes: {problem}")
        volumes = sorted(_text(listed.stdout).split())
        if not volumes:
            return []
        removed = await self._query(argvs.volume_remove_argv(self.binary, volumes))
        if removed.returncode != 0:
            # A volume that a container still mounts stays; the others went.
            problem = argvs.error_line(_text(removed.stderr).splitlines())
            raise EngineError(f"{self.name}: cannot remove every cache volume: {problem}")
        return volumes

    # -- what differs between Docker and Podman ----------------------------------------------

    def check_argv(self) -> list[str]:
        return argvs.check_argv(self.binary)

    def endpoint(self) -> str:
        """Where the client looks for the daemon, for error messages."""
        if host := os.environ.get("DOCKER_HOST"):
            return host
        context = os.environ.get("DOCKER_CONTEXT") or _current_docker_context()
        if context and context != "default":
            return f"docker context '{context}'"
        return "unix:///var/run/docker.sock"

    def unavailable_message(self, stderr: Sequence[str]) -> str:
        """One line for a probe that failed: what went wrong and how to fix it."""
        problem = argvs.error_line(stderr)
        if "permission denied" in problem.lower():
            return (
                f"{self.name}: {problem}; add yourself to the docker group"
                " (sudo usermod -aG docker $USER) and log in again"
            )
        # "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker
        # daemon running?"
        refused = re.search(
            r"cannot connect to the docker daemon at (\S+?)\.?(?:\s|$)", problem, re.I
        )
        if refused:
            return f"{self.name}: no daemon answered on {refused[1]}; {self.start_hint}"
        return f"{self.name}: {problem}; {self.start_hint}"

    async def _build_flavour(self) -> BuildFlavour:
        """BuildKit through buildx when the client has it, else the legacy builder.

        Without buildx, a recent client falls back to the legacy builder on its own, or
        refuses to build when DOCKER_BUILDKIT=1; asking for the builder explicitly gives the
        same behaviour everywhere. `--progress=plain` keeps BuildKit's output line by line;
        `--force-rm` stops the legacy builder leaving the container of a failed RUN behind.
        """
        if self._flavour is None:
            wanted = os.environ.get("DOCKER_BUILDKIT", "").strip().lower()
            if wanted:
                buildkit = wanted not in ("0", "false")
            else:
                try:
                    with anyio.fail_after(CHECK_TIMEOUT):
                        probe = await self._capture(argvs.buildx_probe_argv(self.binary))
                    buildkit = probe.returncode == 0
                except TimeoutError:
                    buildkit = False
            if buildkit:
                self._flavour = BuildFlavour(("--progress=plain",), {"DOCKER_BUILDKIT": "1"})
            else:
                self._flavour = BuildFlavour(("--force-rm",), {"DOCKER_BUILDKIT": "0"})
        return self._flavour

    # -- running the CLI ---------------------------------------------------------------------

    @asynccontextmanager
    async def _spawn(
        self, argv: Sequence[str], extra_env: Mapping[str, str] | None = None
    ) -> AsyncIterator[Process]:
        """Start the CLI; kill it if the body does not finish normally.

        Its own session keeps a terminal's Ctrl-C away from it: parapipe decides what to stop
        and removes containers itself, instead of the CLI reacting half-way.
        """
        env = {**os.environ, **extra_env} if extra_env else None
        try:
            process = await anyio.open_process(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise EngineUnavailable(
                f"{self.name}: the `{self.binary}` command was not found; {self.install_hint}"
            ) from exc
        except OSError as exc:
            raise EngineUnavailable(
                f"{self.name}: cannot run `{self.binary}`: {exc.strerror or exc}"
            ) from exc
        try:
            yield process
        except BaseException:
            # SIGKILL, not SIGTERM: the client keeps no state worth a clean exit, and `docker
            # run` would forward SIGTERM to the container and wait for it instead of exiting.
            with suppress(ProcessLookupError):
                process.kill()
            raise
        finally:
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                await process.aclose()

    async def _capture(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the CLI to the end and keep its output; the caller bounds the time."""
        async with self._spawn(argv, env) as process:
            stdout: list[bytes] = []
            stderr: list[bytes] = []
            async with anyio.create_task_group() as readers:
                readers.start_soon(_drain, process.stdout, stdout)
                readers.start_soon(_drain, process.stderr, stderr)
            code = await process.wait()
        return subprocess.CompletedProcess(list(argv), code, b"".join(stdout), b"".join(stderr))

    async def _query(self, argv: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
        try:
            with anyio.fail_after(QUERY_TIMEOUT):
                return await self._capture(argv)
        except TimeoutError:
            raise EngineError(
                f"{self.name}: `{' '.join(argv[:3])}` got no answer within {QUERY_TIMEOUT:g} s"
            ) from None

    async def _stream(
        self, argv: Sequence[str], log: LineSink, env: Mapping[str, str] | None = None
    ) -> tuple[int, list[str]]:
        """Run the CLI, passing stdout and stderr to `log` line by line as they come.

        Returns the exit code and the last lines, for an error message.
        """
        tail: deque[str] = deque(maxlen=_TAIL_LINES)

        def keep(line: str) -> None:
            tail.append(line)
            log(line)

        async with self._spawn(argv, env) as process:
            async with anyio.create_task_group() as pumps:
                pumps.start_soon(_pump_lines, process.stdout, keep)
                pumps.start_soon(_pump_lines, process.stderr, keep)
            code = await process.wait()
        return code, list(tail)

    async def _run_container(
        self, run: StepRun, name: str, log: LineSink, env_file: Path | None = None
    ) -> int:
        env = argvs.run_cli_env(run)
        if not (run.inputs or run.outputs):
            argv = argvs.run_argv(self.binary, run, name, env_file=env_file)
            return await self._attached(argv, env, run, log)
        # Files cross into a container before it starts and out of it after it stopped, so
        # this step is created, filled, started, emptied, then removed.
        argv = argvs.run_argv(self.binary, run, name, create=True, env_file=env_file)
        created = await self._capture(argv, env)
        if created.returncode != 0:
            problem = argvs.error_line(_text(created.stderr).splitlines())
            raise EngineError(
                f"{self.name} could not create the container of {run.step!r}: {problem}"
            )
        try:
            if run.inputs:
                await self._copy_in(name, run)
            code = await self._attached(argvs.start_argv(self.binary, name), None, run, log)
            if code == 0 and run.outputs:
                await self._copy_out(name, run)
            return code
        finally:
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                await self._remove_quietly([name])

    async def _copy_in(self, name: str, run: StepRun) -> None:
        with tempfile.TemporaryFile() as archive:
            await anyio.to_thread.run_sync(step_files.pack_folders, run.inputs, archive)
            argv = argvs.copy_in_argv(self.binary, name, run.workdir)
            with anyio.fail_after(QUERY_TIMEOUT):
                copied = await anyio.run_process(argv, stdin=archive, check=False)
        if copied.returncode != 0:
            problem = argvs.error_line(_text(copied.stderr).splitlines())
            raise EngineError(
                f"{self.name}: cannot copy the needs' outputs into {run.step!r}: {problem}"
            )

    async def _copy_out(self, name: str, run: StepRun) -> None:
        assert run.outputs_dir is not None
        run.outputs_dir.mkdir(parents=True, exist_ok=True)
        for output in run.outputs:
            path = posixpath.join(run.workdir, output)
            copied = await self._query(argvs.copy_out_argv(self.binary, name, path))
            if copied.returncode != 0:
                problem = argvs.error_line(_text(copied.stderr).splitlines())
                if re.search(r"could not find|no such file|not found", problem, re.IGNORECASE):
                    raise OutputError(f"step {run.step!r} did not produce its output '{output}'")
                raise EngineError(
                    f"{self.name}: cannot copy output '{output}' of {run.step!r}: {problem}"
                )
            await anyio.to_thread.run_sync(
                step_files.unpack_output, copied.stdout, output, run.outputs_dir, run.step
            )

    async def _attached(
        self, argv: list[str], env: Mapping[str, str] | None, run: StepRun, log: LineSink
    ) -> int:
        """Run `run` or `start --attach`, streaming the step's output, and tell the step's exit
        code from the engine's own failures."""
        async with self._spawn(argv, extra_env=env) as process:
            return await self._attached_to(process, process.stdout, run, log)

    async def _attached_to(
        self, process: Process, stdout: ByteReceiveStream | None, run: StepRun, log: LineSink
    ) -> int:
        """Stream the step's output from its attached CLI until it exits, and tell the step's
        exit code from the engine's own failures."""
        cli_errors: list[str] = []

        def on_cli_stderr(line: str) -> None:
            # The step script sends the container's stderr to stdout, so what arrives here is
            # the CLI's own complaint (or a warning of it).
            cli_errors.append(line)
            log(line)

        async with anyio.create_task_group() as pumps:
            pumps.start_soon(_pump_lines, stdout, log)
            pumps.start_soon(_pump_lines, process.stderr, on_cli_stderr)
        code = await process.wait()
        if code < 0:
            raise EngineError(f"{self.name}: `{self.binary} run` was killed by signal {-code}")
        if code in _RUN_FAILURE_CODES and any(line.strip() for line in cli_errors):
            problem = argvs.error_line(cli_errors)
            # A runtime or ulimit refusal is the host's setup, not the step: name the fix.
            hint = podman_setup.fix_hint(problem) if self.name == "podman" else None
            raise EngineError(
                f"{self.name} could not run step {run.step!r}: {problem}"
                + (f"; {hint}" if hint else "")
            )
        if code > 128 and not await self._answers():
            # A daemon that shuts down kills its containers (137) after it stopped answering:
            # that is the engine going away, not the step failing.
            raise EngineError(
                f"{self.name}: the daemon on {self.endpoint()} stopped answering while step"
                f" {run.step!r} ran (its container ended with exit {code}); {self.start_hint}"
            )
        return code

    @asynccontextmanager
    async def _pool_session(self, run_dir: Path) -> AsyncIterator[None]:
        async with docker_pool.open_pool(self.binary, run_dir) as pool:
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None

    async def _run_pooled(
        self, run: StepRun, pooled: docker_pool.PooledContainer, log: LineSink
    ) -> int | None:
        """Run `run` in a container the pool started, as `_run_container` would in its own.
        None when that container ended before the step could start in it: nothing ran."""
        assert self._pool is not None
        pool = self._pool
        try:
            if not await pool.ready(pooled):
                return None
            if run.inputs:
                await self._copy_in(pooled.name, run)
            if not await pool.send(pooled, run):
                return None
            code = await self._follow_pooled(run, pooled, log)
            if code == 0 and run.outputs:
                await self._copy_out(pooled.name, run)
            return code
        except BaseException:
            # Cancelled (a timeout, fail-fast, Ctrl-C) or failed: the container goes now.
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                await self._remove_quietly([pooled.name])
            raise
        finally:
            pool.release(pooled)

    async def _follow_pooled(
        self, run: StepRun, pooled: docker_pool.PooledContainer, log: LineSink
    ) -> int:
        """The output and exit code of the step that `pooled` runs."""
        marker = docker_pool.ExitMarker(pooled.nonce, log)
        code: int | None = None
        with anyio.CancelScope() as following:
            if not run.outputs:
                # Done when the step's shell says so: the container's teardown need not hold
                # the next step up. Outputs are copied out of a stopped container.
                marker.on_exit = following.cancel
            code = await self._attached_to(pooled.process, pooled.output, run, marker.log)
            marker.flush()
        if marker.code is not None:
            return marker.code if code is None else code
        if code is None or code == 0:
            # Only a signal stops the step's shell from saying its code, and then the code is
            # not 0: this container never ran the step.
            raise EngineError(
                f"{self.name}: the container {pooled.name} ended without running step {run.step!r}"
            )
        return code

    async def _ensure_volume(self, cache: CacheVolume) -> None:
        """Create the cache's volume, labelled, unless it exists; `docker run -v` would make
        one without labels. Steps that start together wait for one another here."""
        async with self._volumes_lock:
            if cache.name in self._volumes_ready:
                return
            if (await self._query(argvs.volume_inspect_argv(self.binary, cache.name))).returncode:
                created = await self._query(argvs.volume_create_argv(self.binary, cache))
                # Podman refuses a name that exists; another run may have just made it.
                found = await self._query(argvs.volume_inspect_argv(self.binary, cache.name))
                if created.returncode and found.returncode:
                    problem = argvs.error_line(_text(created.stderr).splitlines())
                    raise EngineError(
                        f"{self.name}: cannot create volume {cache.name} for cache"
                        f" '{cache.cache}': {problem}"
                    )
            self._volumes_ready.add(cache.name)

    async def _answers(self) -> bool:
        try:
            await self.check()
        except EngineUnavailable:
            return False
        return True

    async def _local_or_pulled(self, ref: str, log: LineSink) -> str:
        found = await self.find_image(ref)
        if found is not None:
            return found
        log(f"parapipe: {ref} is not available locally, pulling it")
        code, tail = await self._stream(argvs.pull_argv(self.binary, ref), log)
        found = await self.find_image(ref) if code == 0 else None
        if found is None:
            raise ImageBuildFailed(
                f"base image '{ref}' is not available locally and could not be pulled:"
                f" {argvs.error_line(tail)}"
            )
        return found

    async def _remove_quietly(self, containers: Sequence[str]) -> None:
        """`rm -f`, for cleaning up: a container that is already gone is what we wanted, and an
        engine that stopped answering cannot be helped here."""
        with suppress(ParapipeError):
            await self._capture(argvs.remove_argv(self.binary, containers))


class PodmanEngine(DockerEngine):
    name: ClassVar[str] = "podman"
    binary: ClassVar[str] = "podman"
    install_hint: ClassVar[str] = "install Podman (https://podman.io/docs/installation)"
    start_hint: ClassVar[str] = "run `podman info` to see why (podman machine start on macOS)"

    def check_argv(self) -> list[str]:
        return argvs.podman_check_argv(self.binary)

    def endpoint(self) -> str:
        return os.environ.get("CONTAINER_HOST") or "the local podman"

    def unavailable_message(self, stderr: Sequence[str]) -> str:
        return f"{self.name}: {argvs.error_line(stderr)}; {self.start_hint}"

    async def _build_flavour(self) -> BuildFlavour:
        # Buildah takes the legacy flags; it removes intermediate containers by default.
        return BuildFlavour()


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
    """Lay out the build context: the Dockerfile, the selected files and the CA bundle.

    Files are hard-linked when the context is on the same filesystem as the source (no copy),
    else copied; modes and symlinks are kept. Blocking: run it in a worker thread.
    """
    source_root = context / argvs.CONTEXT_SOURCE
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
        bundle = context / argvs.CONTEXT_CA_BUNDLE
        shutil.copyfile(plan.ca_bundle, bundle)
        bundle.chmod(0o644)
    (context / argvs.CONTEXT_DOCKERFILE).write_text(argvs.dockerfile_text(plan), encoding="utf-8")


@contextmanager
def _secret_env_file(run: StepRun) -> Iterator[Path | None]:
    """The env file of `argvs.secret_env_file_text(run)`, readable by this user only and
    deleted when the step ends; None when the step needs none."""
    text = argvs.secret_env_file_text(run)
    if text is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="parapipe-secrets-") as folder:  # mode 0700
        path = Path(folder, "env")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as env_file:
            env_file.write(text)
        yield path


async def _pump_lines(stream: ByteReceiveStream | None, sink: LineSink) -> None:
    """Pass `stream` to `sink` one decoded line at a time, as the lines arrive."""
    if stream is None:
        return
    pending = bytearray()
    async for chunk in stream:
        pending += chunk
        *lines, rest = pending.split(b"\n")
        for line in lines:
            sink(_line_text(line))
        while len(rest) > _MAX_LINE:
            sink(_line_text(rest[:_MAX_LINE]))
            rest = rest[_MAX_LINE:]
        pending = rest
    if pending:
        sink(_line_text(pending))


async def _drain(stream: ByteReceiveStream | None, into: list[bytes]) -> None:
    if stream is not None:
        async for chunk in stream:
            into.append(chunk)


def _line_text(raw: bytes | bytearray) -> str:
    return bytes(raw).decode("utf-8", errors="replace").removesuffix("\r")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _first_line(command: str) -> str:
    lines = command.strip().splitlines() or [""]
    return lines[0] + (" …" if len(lines) > 1 else "")


def _means_no_such_image(problem: str) -> bool:
    lowered = problem.lower()
    # docker: "No such image: x"; podman: "x: image not known".
    return "no such image" in lowered or "image not known" in lowered


def _read_image_id(iidfile: Path, engine: str) -> str:
    try:
        image_id = iidfile.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise EngineError(f"{engine}: the build succeeded but wrote no image id") from exc
    if not image_id:
        raise EngineError(f"{engine}: the build succeeded but wrote no image id")
    return image_id


def _current_docker_context() -> str | None:
    """The context `docker context use` selected, from the client's config file."""
    config_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    try:
        config = json.loads(Path(config_dir, "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    context = config.get("currentContext") if isinstance(config, dict) else None
    return context if isinstance(context, str) else None
