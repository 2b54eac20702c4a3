"""Interactive shells through the Docker and Podman clients (`run -i`, `parapipe shell`).

The shell's container is `create`d with a terminal, filled with the needs' outputs when there
are any, then started attached to parapipe's own terminal; it is removed however that ends.
Its secrets reach it through the CLI's environment (`-e NAME`), never on a command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import anyio

from parapipe.engine import process
from parapipe.engine.api import ShellRun
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker.steps import StepContainers
from parapipe.errors import EngineError

QUERY_TIMEOUT: Final = 60.0
CLEANUP_TIMEOUT: Final = 30.0


def shell_container_name(run: ShellRun) -> str:
    """`parapipe-<run_id>-<step>.shell`: never a step's, a pooled or a holder container's name."""
    return argvs.valid_name(f"parapipe-{run.run_id}-{run.step}.shell")


async def open_shell(steps: StepContainers, run: ShellRun) -> int:
    """The shell's exit code, once the user left it; its container is gone by then."""
    program = steps.program
    name = shell_container_name(run)
    for cache in run.caches:
        await steps.ensure_volume(cache)
    create = argvs.shell_create_argv(program.binary, run, name)
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
        return await process.attached_to_terminal(program, start)
    finally:
        with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
            await steps.remove_quietly([name])


async def remove_images(program: process.Program, image_ids: Sequence[str]) -> None:
    if not image_ids:
        return
    argv = argvs.image_remove_argv(program.binary, image_ids)
    removed = await process.query(program, argv, QUERY_TIMEOUT)
    if removed.code != 0:
        raise EngineError(f"{program.name}: cannot remove the kept images: {removed.problem}")
