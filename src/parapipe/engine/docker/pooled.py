"""The pool's containers from their start to their removal: each runs `loader.LOADER` under an
attached CLI whose stdin is a pipe from parapipe, and goes by itself (`--rm`) or is removed in
the background, in batches; whatever is left when the run ends goes in `close`."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Final

import anyio
from anyio.abc import Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from parapipe.engine import process
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import images
from parapipe.errors import EngineUnavailable
from parapipe.model import Prewarm

QUERY_TIMEOUT: Final = 60.0  # one `rm`
REMOVE_BATCH_DELAY: Final = 0.5  # seconds a finished container may wait to be removed
_NO_ENTRYPOINT: Final = frozenset({"", "null", "[]"})


@dataclass(eq=False, kw_only=True)
class PooledContainer:
    """A container started for whichever step comes next, with its attached CLI."""

    name: str
    nonce: str
    keep: bool  # for a step with outputs: not `--rm`, kept once stopped to copy them out
    process: Process
    output: BufferedByteReceiveStream  # the CLI's stdout: the step's output after the ready line
    network: str | None = None  # the holder whose network it is in, until its CLI exited
    ready: anyio.Event = field(default_factory=anyio.Event)  # set once `up` is known
    up: bool = False  # the loader said it is ready; still False after `ready`: the CLI ended
    sent: bool = False  # the step is in: the container ends by itself
    discarded: bool = False  # the pool is done with it


class PooledContainers:
    """Starts the pool's containers, and removes them and reaps their CLIs once done with."""

    def __init__(
        self,
        program: process.Program,
        note: Callable[[str], None],
        network_freed: Callable[[str, str, bool], None],
    ) -> None:
        self.program = program
        self.closing = False
        self.tasks: TaskGroup | None = None  # the background work, while the pool is open
        self._note = note
        self._network_freed = network_freed  # (holder, container, may still run)
        self._live: dict[str, PooledContainer] = {}  # those whose CLI is not reaped yet
        self._unremoved: set[str] = set()  # containers that may still exist
        self._to_remove: list[str] = []
        self._wake_remover = anyio.Event()

    async def start(
        self, request: Prewarm, name: str, *, keep: bool, network: str | None
    ) -> PooledContainer:
        """Start `name`; raises `EngineUnavailable` when the CLI cannot be run."""
        nonce = secrets.token_hex(16)
        argv = argvs.pool_run_argv(
            self.program.binary, request, name, nonce, keep=keep, network=network
        )
        child = await process.start(self.program, argv, stdin=subprocess.PIPE)
        assert child.stdout is not None
        container = PooledContainer(
            name=name,
            nonce=nonce,
            keep=keep,
            process=child,
            output=BufferedByteReceiveStream(child.stdout),
            network=network,
        )
        self._live[name] = container
        self._unremoved.add(name)
        return container

    def discard(self, container: PooledContainer) -> None:
        """The pool is done with `container`: it goes, in the background."""
        container.discarded = True
        if container.process.returncode is None and not container.sent:
            # Without its CLI, an idle container reads the end of its stdin and exits by
            # itself, which spares the daemon killing it.
            process.kill(container.process)
        if not container.keep and container.up:
            # `--rm`, and it stops by itself: the daemon removes it, then its CLI exits.
            self._unremoved.discard(container.name)
            if not self.closing and self.tasks is not None:
                self.tasks.start_soon(self.reap, container)  # else `close` reaps it
            return
        self._to_remove.append(container.name)
        self._wake_remover.set()

    async def remove_forever(self) -> None:
        while True:
            await self._wake_remover.wait()
            # One `rm` for the containers of the steps that end meanwhile: each call is a CLI
            # process, and the CPU it takes competes with the steps.
            await anyio.sleep(REMOVE_BATCH_DELAY)
            self._wake_remover = anyio.Event()
            names, self._to_remove = self._to_remove, []
            await self._remove(names)

    async def _remove(self, names: list[str]) -> None:
        if not names:
            return
        with anyio.move_on_after(QUERY_TIMEOUT), suppress(EngineUnavailable):
            # A container already gone is what we wanted; one that `rm` could not remove
            # still carries the run's label for the final sweep.
            await process.capture(self.program, argvs.remove_argv(self.program.binary, names))
        self._unremoved.difference_update(names)
        self._note(f"removed {', '.join(names)}")
        for name in names:
            if (container := self._live.get(name)) is not None:
                await self.reap(container)

    async def reap(self, container: PooledContainer, wait: float = QUERY_TIMEOUT) -> None:
        """Let the CLI of `container` exit, reading what it still writes (once a step ended
        early, nothing else does: a full pipe would hold it up); kill it if it does not."""
        child = container.process
        with anyio.move_on_after(wait):
            if not self.closing:
                await container.ready.wait()  # the pool reads the output until then
            async with anyio.create_task_group() as drains:
                drains.start_soon(process.drain, container.output)
                drains.start_soon(process.drain, child.stderr)
            await child.wait()
        killed = await process.reap(child, wait=0)
        self._live.pop(container.name, None)
        if container.network is not None:
            self._network_freed(container.network, container.name, killed)
            container.network = None

    async def close(self, wait: float) -> None:
        """Reap every CLI, waiting `wait` seconds for each, and remove every container that may
        be left; call it shielded."""
        self.closing = True
        # The CLIs of the steps' `--rm` containers exit once the daemon removed them: waiting
        # for that spares the runner's final sweep finding them still there.
        async with anyio.create_task_group() as reaping:
            for container in list(self._live.values()):
                reaping.start_soon(self.reap, container, wait)
        self._to_remove.clear()
        await self._remove(sorted(self._unremoved))


async def entrypoint_refusal(program: process.Program, image_id: str) -> str | None:
    """Why containers of `image_id` cannot be started ahead of their steps, if they cannot: an
    ENTRYPOINT would run as the container starts, before the step's inputs are in."""
    entrypoint = await images.entrypoint(program, image_id)
    if entrypoint is None:
        return f"cannot read the image's ENTRYPOINT ({image_id})"
    if entrypoint not in _NO_ENTRYPOINT:
        return f"the image has an ENTRYPOINT, {entrypoint}, which must start with the step"
    return None
