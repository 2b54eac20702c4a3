"""Interactive shells through the Docker and Podman clients (`run -i`, `parapipe shell`).

The shell's container is `create`d with a terminal, filled with the needs' outputs when there
are any, then started attached to parapipe's own terminal; it is removed however that ends.
Its secrets reach it once it runs, through `exec -i` into a tmpfs (`loader.SHELL_SECRETS`): never
in its config (`inspect`), a layer or on a command line, and on a remote engine too.

The step's services start first, fresh, as beside a step (`services.run_beside_services`): the
shell opens on their network once every one is ready, and they go when it closes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from contextlib import suppress
from typing import Final

import anyio

from parapipe.engine import process
from parapipe.engine.api import ShellRun
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import loader, services
from parapipe.engine.docker.steps import StepContainers
from parapipe.errors import EngineError

QUERY_TIMEOUT: Final = 60.0
SECRETS_TIMEOUT: Final = 30.0  # as long as `loader.SHELL_SECRETS_WAIT` waits
CLEANUP_TIMEOUT: Final = 30.0


def shell_container_name(run: ShellRun) -> str:
    """`parapipe-<run_id>-<step>.shell`: never a step's, a pooled or a holder container's name."""
    return argvs.valid_name(f"parapipe-{run.run_id}-{run.step}.shell")


async def open_shell(steps: StepContainers, run: ShellRun) -> int:
    """The shell's exit code, once the user left it; its container (and its services, with
    their network) are gone by then. `ServiceFailed` when a service is never ready: then no
    shell opens."""
    if run.services:
        return await services.run_beside_services(
            steps.program, run, run.say, lambda network: _open_shell(steps, run, network)
        )
    return await _open_shell(steps, run, None)


async def _open_shell(steps: StepContainers, run: ShellRun, network: str | None) -> int:
    program = steps.program
    name = shell_container_name(run)
    for cache in run.caches:
        await steps.ensure_volume(cache)
    create = argvs.shell_create_argv(program.binary, run, name, network)
    try:
        created = await process.capture(program, create, env=argvs.shell_cli_env(run))
        if created.code != 0:
            raise EngineError(
                f"{program.name} could not create the shell container of {run.step!r}:"
                f" {created.problem}"
            )
        if run.inputs:
            await steps.copy_in(name, run)
        start = argvs.start_terminal_argv(program.binary, name)
        if not run.secrets:
            return await process.attached_to_terminal(program, start)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_hand_secrets, program, name, run)
            code = await process.attached_to_terminal(program, start)
            tasks.cancel_scope.cancel()
        return code
    finally:
        with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
            await steps.remove_quietly([name])


async def _hand_secrets(program: process.Program, name: str, run: ShellRun) -> None:
    """Write the shell's secrets into its container (`loader.SHELL_SECRETS`) once it runs:
    `exec` fails until then, so it is tried again for as long as the shell waits for them."""
    argv = [program.binary, "exec", "-i", name, "sh", "-c", loader.SHELL_SECRETS_WRITE]
    script = loader.shell_secrets_script(run.secrets)
    with anyio.move_on_after(SECRETS_TIMEOUT):
        # On a pipe, never through a file on the host's disk. Polled: nothing tells parapipe
        # when the container runs but `exec` succeeding.
        for _ in range(int(SECRETS_TIMEOUT / 0.1)):
            if await _written(program, argv, script) == 0:
                return
            await anyio.sleep(0.1)


async def _written(program: process.Program, argv: list[str], script: bytes) -> int:
    async with process.spawn(program, argv, stdin=subprocess.PIPE) as writer:
        ignored: list[bytes] = []
        async with anyio.create_task_group() as pumps:
            pumps.start_soon(process.drain, writer.stdout, ignored)
            pumps.start_soon(process.drain, writer.stderr, ignored)
            if writer.stdin is not None:
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await writer.stdin.send(script)
                    await writer.stdin.aclose()
        return await writer.wait()


async def remove_images(program: process.Program, image_ids: Sequence[str]) -> None:
    if not image_ids:
        return
    argv = argvs.image_remove_argv(program.binary, image_ids)
    removed = await process.query(program, argv, QUERY_TIMEOUT)
    if removed.code != 0:
        raise EngineError(f"{program.name}: cannot remove the kept images: {removed.problem}")
