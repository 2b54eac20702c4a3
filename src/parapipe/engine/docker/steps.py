"""Steps in containers, through the Docker and Podman clients: in one the pool started ahead of
the step when it has one, else in one of the step's own.

Either way the step's secrets reach it on stdin (`loader`), never in its container's config or
on a command line. A step's own container is `run`, or, when files cross into it before it
starts or out of it after it stopped, `create`d, filled, started, emptied, then removed.
"""

from __future__ import annotations

import posixpath
import secrets
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Final

import anyio
import anyio.to_thread
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from parapipe.engine import process
from parapipe.engine.api import CacheVolume, LineSink, ShellRun, StepRun, kept_image_tag
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import errors, loader, services
from parapipe.engine.docker import files as step_files
from parapipe.engine.docker.pool import ContainerPool
from parapipe.engine.docker.pooled import PooledContainer
from parapipe.errors import EngineError, OutputError, ParapipeError

QUERY_TIMEOUT: Final = 60.0  # inspect / cp / rm on a busy daemon
CLEANUP_TIMEOUT: Final = 30.0  # removing a container after a cancelled or failed step

# Called when an attached CLI ended with a signal's code or failed itself: the engine's error
# when its daemon stopped answering meanwhile (a daemon that shuts down kills its containers,
# one killed cuts the CLI off), else None.
DaemonCheck = Callable[[StepRun, int], Awaitable[EngineError | None]]


class StepContainers:
    """Runs each step in a container of its own or one from the pool, and removes it."""

    def __init__(
        self,
        program: process.Program,
        *,
        daemon_lost: DaemonCheck,
        fix_hint: Callable[[str], str | None],
    ) -> None:
        self.program = program
        self._daemon_lost = daemon_lost
        self._fix_hint = fix_hint  # what to do about a refusal that is the host's setup
        self._volumes_ready: set[str] = set()  # cache volumes known to exist
        self._volumes_lock = anyio.Lock()

    async def run(self, run: StepRun, log: LineSink, pool: ContainerPool | None) -> int:
        pooled = await pool.take(run) if pool is not None else None
        if pool is not None and pooled is not None:
            code = await self._run_pooled(run, pool, pooled, log)
            if code is not None:
                return code
        if run.services:
            # The step's own container, on the network its services are on.
            return await services.run_beside_services(
                self.program, run, log, lambda network: self._run_in(run, log, network)
            )
        return await self._run_in(run, log, None)

    async def _run_in(self, run: StepRun, log: LineSink, network: str | None) -> int:
        """`run` in a container of its own; on `network` when given."""
        name = argvs.container_name(run.run_id, run.step, run.attempt)
        for cache in run.caches:
            await self.ensure_volume(cache)
        try:
            return await self._run_own(run, name, log, network)
        except BaseException:
            # Cancelled (fail-fast, Ctrl-C) or failed: `spawn` has killed the CLI by now, so
            # it cannot create the container after this removes it.
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                await self.remove_quietly([name])
            raise

    async def remove_quietly(self, containers: Sequence[str]) -> None:
        """`rm -f`, for cleaning up: a container that is already gone is what we wanted, and an
        engine that stopped answering cannot be helped here."""
        with suppress(ParapipeError):
            await process.capture(self.program, argvs.remove_argv(self.program.binary, containers))

    async def _run_own(
        self, run: StepRun, name: str, log: LineSink, network: str | None = None
    ) -> int:
        nonce = secrets.token_hex(16) if run.secrets else ""
        # Made before anything starts: a secret that cannot be handed over fails the step now.
        script = loader.secrets_script(run, nonce) if run.secrets else None
        env = argvs.step_cli_env(run.env)
        binary = self.program.binary
        if not (run.inputs or run.outputs or run.keep_failed):
            argv = argvs.run_argv(binary, run, name, nonce=nonce, network=network)
            return await self._attached(argv, env, run, log, script)
        create = argvs.run_argv(binary, run, name, create=True, nonce=nonce, network=network)
        created = await process.capture(self.program, create, env=env)
        if created.code != 0:
            raise EngineError(
                f"{self.program.name} could not create the container of {run.step!r}:"
                f" {created.problem}"
            )
        try:
            if run.inputs:
                await self.copy_in(name, run)
            start = argvs.start_argv(binary, name, interactive=script is not None)
            code = await self._attached(start, None, run, log, script)
            if code == 0 and run.outputs:
                await self._copy_out(name, run)
            if code != 0 and run.keep_failed:
                await self._keep(name, run, log)
            return code
        finally:
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                await self.remove_quietly([name])

    async def _attached(
        self,
        argv: list[str],
        env: dict[str, str] | None,
        run: StepRun,
        log: LineSink,
        script: bytes | None,
    ) -> int:
        """Run `run` or `start --attach`, with `script` on its stdin, if any."""
        stdin = subprocess.PIPE if script is not None else subprocess.DEVNULL
        async with process.spawn(self.program, argv, env=env, stdin=stdin) as attached:
            return await self.attached_to(attached, attached.stdout, run, log, script)

    async def attached_to(
        self,
        attached: Process,
        stdout: ByteReceiveStream | None,
        run: StepRun,
        log: LineSink,
        script: bytes | None = None,
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
            if script is not None and attached.stdin is not None:
                pumps.start_soon(_send, attached.stdin, script)
            pumps.start_soon(process.pump_lines, stdout, log)
            pumps.start_soon(process.pump_lines, attached.stderr, on_cli_stderr)
        code = await attached.wait()
        name = self.program.name
        if code < 0:
            raise EngineError(f"{name}: `{self.program.binary} run` was killed by signal {-code}")
        if errors.is_run_failure(code, cli_errors):
            # A daemon killed at once, or a remote one whose connection broke, cuts the
            # attached CLI off ("error waiting for container: unexpected EOF"): say that.
            if (lost := await self._daemon_lost(run, code)) is not None:
                raise lost
            problem = process.error_line(cli_errors)
            hint = self._fix_hint(problem)
            raise EngineError(
                f"{name} could not run step {run.step!r}: {problem}" + (f"; {hint}" if hint else "")
            )
        if code > 128 and (lost := await self._daemon_lost(run, code)) is not None:
            raise lost
        return code

    async def _run_pooled(
        self, run: StepRun, pool: ContainerPool, pooled: PooledContainer, log: LineSink
    ) -> int | None:
        """Run `run` in a container the pool started, as `_run_own` would in its own. None when
        that container ended before the step could start in it: nothing ran."""
        try:
            if not await pool.ready(pooled):
                return None
            if run.inputs:
                await self.copy_in(pooled.name, run)
            if not await pool.send(pooled, run):
                return None
            code = await self._follow_pooled(run, pooled, log)
            if code == 0 and run.outputs:
                await self._copy_out(pooled.name, run)
            return code
        except BaseException:
            # Cancelled (a timeout, fail-fast, Ctrl-C) or failed: the container goes now.
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                await self.remove_quietly([pooled.name])
            raise
        finally:
            pool.release(pooled)

    async def _follow_pooled(self, run: StepRun, pooled: PooledContainer, log: LineSink) -> int:
        """The output and exit code of the step that `pooled` runs."""
        marker = loader.ExitMarker(pooled.nonce, log)
        code: int | None = None
        with anyio.CancelScope() as following:
            if not run.outputs:
                # Done when the step's shell says so: the container's teardown need not hold
                # the next step up. Outputs are copied out of a stopped container.
                marker.on_exit = following.cancel
            code = await self.attached_to(pooled.process, pooled.output, run, marker.log)
            marker.flush()
        if marker.code is not None:
            return marker.code if code is None else code
        if code is None or code == 0:
            # Only a signal stops the step's shell from saying its code, and then the code is
            # not 0: this container never ran the step.
            raise EngineError(
                f"{self.program.name}: the container {pooled.name} ended without running step"
                f" {run.step!r}"
            )
        return code

    async def _keep(self, name: str, run: StepRun, log: LineSink) -> None:
        """Keep the stopped container's filesystem as `kept_image_tag`, for `run -i`."""
        tag = kept_image_tag(run.run_id, run.step)
        # A retried step's earlier failure holds the tag: moving the tag would leave that image
        # behind, untagged, so it goes first.
        with suppress(ParapipeError):
            remove = argvs.image_remove_argv(self.program.binary, [tag])
            await process.query(self.program, remove, QUERY_TIMEOUT)
        argv = argvs.commit_argv(self.program.binary, name, tag)
        committed = await process.query(self.program, argv, QUERY_TIMEOUT)
        if committed.code != 0:
            log(f"parapipe: cannot keep the failed container for a shell: {committed.problem}")

    async def copy_in(self, name: str, run: StepRun | ShellRun) -> None:
        """Copy `run.inputs` (folders laid out like the workdir) into the container `name`."""
        with tempfile.TemporaryFile() as archive:
            await anyio.to_thread.run_sync(step_files.pack_folders, run.inputs, archive)
            argv = argvs.copy_in_argv(self.program.binary, name, run.workdir)
            with anyio.fail_after(QUERY_TIMEOUT):
                copied = await process.capture(self.program, argv, stdin=archive)
        if copied.code != 0:
            raise EngineError(
                f"{self.program.name}: cannot copy the needs' outputs into {run.step!r}:"
                f" {copied.problem}"
            )

    async def _copy_out(self, name: str, run: StepRun) -> None:
        assert run.outputs_dir is not None
        run.outputs_dir.mkdir(parents=True, exist_ok=True)
        for output in run.outputs:
            path = posixpath.join(run.workdir, output)
            argv = argvs.copy_out_argv(self.program.binary, name, path)
            copied = await process.query(self.program, argv, QUERY_TIMEOUT)
            if copied.code != 0:
                if errors.means_no_such_path(copied.problem):
                    raise OutputError(f"step {run.step!r} did not produce its output '{output}'")
                raise EngineError(
                    f"{self.program.name}: cannot copy output '{output}' of {run.step!r}:"
                    f" {copied.problem}"
                )
            await anyio.to_thread.run_sync(
                step_files.unpack_output, copied.stdout, output, run.outputs_dir, run.step
            )

    async def ensure_volume(self, cache: CacheVolume) -> None:
        """Create the cache's volume, labelled, unless it exists; `docker run -v` would make
        one without labels. Steps that start together wait for one another here."""
        binary = self.program.binary
        async with self._volumes_lock:
            if cache.name in self._volumes_ready:
                return
            inspect = argvs.volume_inspect_argv(binary, cache.name)
            if (await process.query(self.program, inspect, QUERY_TIMEOUT)).code:
                create = argvs.volume_create_argv(binary, cache)
                created = await process.query(self.program, create, QUERY_TIMEOUT)
                # Podman refuses a name that exists; another run may have just made it.
                found = await process.query(self.program, inspect, QUERY_TIMEOUT)
                if created.code and found.code:
                    raise EngineError(
                        f"{self.program.name}: cannot create volume {cache.name} for cache"
                        f" '{cache.cache}': {created.problem}"
                    )
            self._volumes_ready.add(cache.name)


async def _send(stdin: ByteSendStream, script: bytes) -> None:
    """Hand the container its script, then end its stdin. A CLI that went away meanwhile says
    why itself; the loader then never runs the step."""
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stdin.send(script)
        await stdin.aclose()
