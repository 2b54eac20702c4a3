"""Containers started ahead of the steps that will run in them, for Docker and Podman.

Starting a container costs about 0.3 s, nearly all of it the daemon's (namespaces, network,
mounts); on a chain of short steps that is most of the run. Every step runs in the same image, so
while earlier steps run, the pool starts containers from it, and a step that becomes ready takes
one that is already up.

A pooled container is created as `argv.run_argv` creates a step's: the same image, workdir
and labels (plus `io.parapipe.pool=1`, and without the step's), attached with `-i`. Like a step's,
it has `--rm`, unless it is meant for a step with outputs, which are copied out once it stopped.
Its first process is `loader.LOADER`, a few lines of `sh`: it prints a ready line, reads a
script from stdin up to a line holding a nonce chosen for that container, and `eval`s it. The
script that a step sends (`loader.step_script`) exports the step's env and secrets and `exec`s
the very command a step's own container runs (`step_command`, which also says its exit code as
it ends, below). So, as without the pool:

- the step's shell is PID 1, with the image's env plus the step's, in the workdir, as the image's
  user; the image needs nothing but `sh`;
- its filesystem is the image's: a container runs one step, never a second;
- the container ends when the step ends, taking background processes with it, and the attached
  CLI exits with the step's exit code, its output streamed as before;
- nothing secret is on a command line: env and secrets arrive on stdin.

`docker exec` into an idle container was the obvious way, and was measured: each step costs an
extra CLI call (~60 ms), the step is not PID 1, a process it leaves behind holds the exec (so the
step) open for up to 2 s, and removing a running container with `rm -f` costs the daemon more than
a container that exits by itself.

A step that needs what only `run` can give (cache volumes), or whose env names a variable that
a shell refuses to export (bash's read-only `UID`, `PPID`, ...), never takes a pooled
container. Nor does a step with services: it runs in a container of its own on its services'
network (`services`), and the journal says so. Nor does any step when the image has an
ENTRYPOINT: it would run as the container starts, before the step's inputs are in.

A pooled step is done when its shell says so (`loader.marked_step_command`), not ~0.1 s later
when the daemon has torn its container down; a step with outputs waits for that, as they are
copied out of a stopped container.

The runner says how many containers its steps will want (`Prewarm`): the pool holds ready one
for each step that may start soon, at most `--jobs`, and never more than the steps that will
still take one. A `--rm` container goes by itself when it stops, even if parapipe or the daemon
went away meanwhile: an idle one stops when its CLI goes, as its stdin ends. A kept one is
removed in the background once its step has ended. What is left when the run ends goes in
`close`, and whatever escapes that (a CLI killed while it created its container) carries the
run's label for the runner's final sweep.

Most of what a container costs is its network, so pooled containers run in networks that
holders lend them (`network`): never shared by two steps at the same time.

`pool.txt` in the run's folder says which container ran which step, in which network.
`pooled` starts and removes the containers; this module decides which to start and hands them
out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Final, TextIO

import anyio
from anyio.abc import TaskGroup

from parapipe.engine import process
from parapipe.engine.api import StepRun
from parapipe.engine.docker import loader
from parapipe.engine.docker.argv import pool_container_name
from parapipe.engine.docker.network import NetworkLender
from parapipe.engine.docker.pooled import PooledContainer, PooledContainers, entrypoint_refusal
from parapipe.errors import EngineUnavailable
from parapipe.model import Prewarm

JOURNAL: Final = "pool.txt"  # not `.log`: those are the steps'
CLOSE_TIMEOUT: Final = 30.0  # removing what is left when the run ends
CLOSE_WAIT: Final = 10.0  # for the CLIs of stopping containers, when the run ends


def can_take(run: StepRun, request: Prewarm) -> bool:
    """Whether `run` can start in a container made for `request`: the same run, image, workdir
    and labels, no volumes, variables that the loader's shell can export, and not a step whose
    failure is kept (`run -i`) or one with services, which run in a container of their own."""
    return (
        (run.run_id, run.image_id, run.workdir)
        == (request.run_id, request.image_id, request.workdir)
        and dict(run.labels) == dict(request.labels)
        and not run.caches
        and not run.keep_failed
        and not run.services  # on its services' network: `take` says so in the journal
        and all(loader.exportable(name) for name in (*run.env, *run.secrets))
    )


@asynccontextmanager
async def open_pool(program: process.Program, run_dir: Path) -> AsyncIterator[ContainerPool]:
    """A pool for one run, which starts nothing until asked; all of it is removed on the way
    out, however the run ends."""
    failure: BaseException | None = None
    pool = ContainerPool(program, run_dir / JOURNAL)
    try:
        async with anyio.create_task_group() as tasks:
            pool.tasks = pool.containers.tasks = pool.lender.tasks = tasks
            tasks.start_soon(pool.fill_forever)
            tasks.start_soon(pool.containers.remove_forever)
            try:
                yield pool
            except BaseException as exc:
                # Raised again below: from inside the task group it would reach the runner
                # wrapped in an ExceptionGroup.
                failure = exc
            finally:
                pool.closing = pool.containers.closing = True
                tasks.cancel_scope.cancel()
    finally:
        # Once the background tasks are over: nothing else reads the CLIs' output any more.
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            await pool.close()
    if failure is not None:
        raise failure


class ContainerPool:
    """Idle containers of two kinds: `--rm` ones, which the daemon removes once they stop (also
    when parapipe or the daemon went away meanwhile), and kept ones for steps with outputs,
    which the pool removes once they are copied out."""

    def __init__(self, program: process.Program, journal: Path) -> None:
        self.program = program
        self.closing = False
        self.disabled = ""  # why the pool stopped starting containers
        self.tasks: TaskGroup | None = None  # the background work, while the pool is open
        self._journal_path = journal
        self._journal: TextIO | None = None
        self._opened = time.monotonic()
        self._request: Prewarm | None = None
        self._idle: dict[bool, deque[PooledContainer]] = {False: deque(), True: deque()}
        self._wake_filler = anyio.Event()
        self._started = 0
        self._failed_starts = process.FailedStarts()
        self._checked_image: str | None = None
        self._checking = anyio.Lock()
        self.lender = NetworkLender(program, self._note)
        self.containers = PooledContainers(program, self._note, self._network_freed)

    @property
    def idle(self) -> int:
        return len(self._idle[False]) + len(self._idle[True])

    def request(self, prewarm: Prewarm) -> None:
        self._request = prewarm
        self._top_up_networks()
        self._wake_filler.set()

    async def take(self, run: StepRun) -> PooledContainer | None:
        """An idle container for `run` (one that is up if any is), else one started for it
        now; None when the step must start a container of its own."""
        request = self._request
        if run.services:
            # Not counted among the steps that take one (`steps_taking_containers`).
            self._note(
                f"step {run.step!r} (attempt {run.attempt}) starts its own container, on the"
                " network of its services"
            )
            return None
        if request is None or self.disabled or self.closing or not can_take(run, request):
            return None
        keep = bool(run.outputs)
        # The runner counted this step among those that still want a container. It is served
        # now, from the pool or, when the pool has none yet (the first steps of a run), by a
        # container of its own: either way the pool must not start one more for it.
        soon, limit = _counts(request, keep)
        self._request = _with_counts(request, keep, max(0, soon - 1), max(0, limit - 1))
        self._wake_filler.set()
        idle = self._idle[keep]
        for stranded in [c for c in idle if c.network and self.lender.ended(c.network)]:
            idle.remove(stranded)
            self._note(f"{stranded.name} is not used: the network it is in has ended")
            self._discard(stranded)
        # Never one whose network a running step uses: the step would wait for that one.
        usable = [c for c in idle if c.network is None or self.lender.free(c.network)]
        container = next((c for c in usable if c.up), None) or next(iter(usable), None)
        if container is not None:
            idle.remove(container)
            if container.network is not None:
                self.lender.take(container.network, container.name)
        elif not keep and await self._image_suits(request.image_id) and not self.disabled:
            # Started now, it is up no sooner than a container of the step's own, but the
            # step ends as soon as its shell says so (`marked_step_command`).
            container = await self._start(request, keep=False, for_step=True)
        if container is None:
            self._note(f"step {run.step!r} (attempt {run.attempt}) starts its own container")
            return None
        self._note(f"{container.name} takes step {run.step!r} (attempt {run.attempt})")
        return container

    async def ready(self, container: PooledContainer) -> bool:
        """Wait until `container` is up. False when it ended first, without running anything:
        the step must then start a container of its own."""
        await container.ready.wait()
        return container.up

    async def send(self, container: PooledContainer, run: StepRun) -> bool:
        """Start `run` in `container`, which is up, once no other step runs in its network.
        False when its CLI went away first (the nonce line, last, did not get through) or no
        step may start in its network any more: nothing of the step ran."""
        stdin = container.process.stdin
        if stdin is None:
            return False
        if container.network is not None and not await self.lender.claim(
            container.network, container.name
        ):
            self._note(f"{container.name} is not used: a step may still run in its network")
            return False
        try:
            await stdin.send(loader.step_script(run, container.nonce))
            container.sent = True
            await stdin.aclose()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self._note(f"{container.name} could not be given step {run.step!r}: {exc!r}")
            return False
        return True

    def release(self, container: PooledContainer) -> None:
        """The step is done with `container`: it goes, in the background."""
        if container.network is not None:
            self.lender.step_ended(container.network, container.name)
        self._discard(container)

    # -- background work ---------------------------------------------------------------------

    async def fill_forever(self) -> None:
        while True:
            await self._wake_filler.wait()
            self._wake_filler = anyio.Event()
            await self._adjust()

    async def _adjust(self) -> None:
        """Start containers up to what the runner wants; remove those beyond what it can use."""
        while not self.closing and (request := self._request) is not None:
            wanted: bool | None = None  # the kind of container to start next, if any
            for keep in (False, True):
                idle = self._idle[keep]
                soon, limit = _counts(request, keep)
                while len(idle) > limit:
                    container = idle.pop()  # the newest: the least far along
                    self._note(f"{container.name} is not needed any more")
                    self._discard(container)
                if wanted is None and len(idle) < min(soon, limit):
                    wanted = keep
            if wanted is None or self.disabled or self.idle >= request.jobs:
                return
            if not await self._image_suits(request.image_id):
                return
            started = await self._start(request, keep=wanted)
            if started is None:
                return
            self._idle[wanted].append(started)

    def _top_up_networks(self) -> None:
        if (request := self._request) is not None:
            # The containers still to start: the steps still to take one, less the idle.
            still_to_start = request.limit + request.limit_with_outputs - self.idle
            self.lender.top_up(request, still_to_start=still_to_start)

    async def _image_suits(self, image_id: str) -> bool:
        async with self._checking:  # the filler and a step may ask at once: one inspect
            if self._checked_image == image_id:
                return True
            if self.disabled:
                return False
            refusal = await entrypoint_refusal(self.program, image_id)
            if refusal is not None:
                self._disable(refusal)
                return False
            self._checked_image = image_id
            return True

    async def _start(
        self, request: Prewarm, *, keep: bool, for_step: bool = False
    ) -> PooledContainer | None:
        """A container for the pool, or `for_step`: for a step that waits for it now."""
        self._started += 1
        name = pool_container_name(request.run_id, self._started)
        if for_step:
            network = self.lender.borrow(name, for_step=True)
        else:
            # A container in a network where a step runs is passed over until that step ends,
            # and a step that finds only such containers starts its own. That is free while
            # more steps are to come than the pool can hold, not near the end of the run,
            # where the container passed over would be left unused.
            still = request.limit + request.limit_with_outputs - self.idle
            busy_too = still > 2 * request.jobs
            network = await self.lender.borrow_soon(name, busy_too=busy_too)
        try:
            container = await self.containers.start(request, name, keep=keep, network=network)
        except EngineUnavailable as exc:
            if network is not None:
                self.lender.give_back(network, name, in_use=False)
            self._disable(str(exc))
            return None
        where = f" in the network of {network}" if network else ""
        self._note(f"{name} starting{where}" + (" (kept when stopped)" if keep else ""))
        self._top_up_networks()
        assert self.tasks is not None
        self.tasks.start_soon(self._watch, container)
        return container

    async def _watch(self, container: PooledContainer) -> None:
        """Wait for the loader's ready line; a CLI that ends before it ran nothing."""
        container.up = await process.ready_line(container.output, loader.READY_LINE)
        if container.up:
            self._failed_starts.up()
            self._note(f"{container.name} up")
            if not self.lender.opened:
                self.lender.opened = True
                self._top_up_networks()
        elif not container.discarded:
            self._note(f"{container.name} ended before it was up: {await _said(container)}")
            if container in self._idle[container.keep]:
                self._idle[container.keep].remove(container)
                self._discard(container)
            if self._failed_starts.failed():
                self._disable(
                    f"{self._failed_starts.in_a_row} containers in a row ended before they were up"
                )
        container.ready.set()
        self._wake_filler.set()

    def _discard(self, container: PooledContainer) -> None:
        self.containers.discard(container)

    def _network_freed(self, holder: str, container: str, in_use: bool) -> None:
        self.lender.give_back(holder, container, in_use=in_use)

    async def close(self) -> None:
        """Remove every container of the pool that may be left and reap every CLI; call it
        shielded."""
        self.closing = True
        for idle in self._idle.values():
            while idle:
                self._discard(idle.popleft())
        await self.containers.close(CLOSE_WAIT)
        await self.lender.close()
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _disable(self, why: str) -> None:
        if not self.disabled:
            self.disabled = why
            self._note(f"no more pooled containers: {why}")
            for idle in self._idle.values():
                while idle:
                    self._discard(idle.popleft())

    def _note(self, text: str) -> None:
        """A line in the pool's journal; it helps to read a run, and is never worth failing
        one for."""
        with suppress(OSError):
            if self._journal is None:
                self._journal = self._journal_path.open("a", encoding="utf-8")
            self._journal.write(f"{time.monotonic() - self._opened:8.3f}s {text}\n")
            self._journal.flush()


async def _said(container: PooledContainer) -> str:
    """The last line its CLI wrote to stderr, for the journal."""
    said: list[bytes] = []
    with anyio.move_on_after(1):
        await process.drain(container.process.stderr, said)
    lines = b"".join(said).decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no error message"


def _counts(request: Prewarm, keep: bool) -> tuple[int, int]:
    """(soon, limit) of the steps that want this kind of container."""
    if keep:
        return request.soon_with_outputs, request.limit_with_outputs
    return request.soon, request.limit


def _with_counts(request: Prewarm, keep: bool, soon: int, limit: int) -> Prewarm:
    if keep:
        return replace(request, soon_with_outputs=soon, limit_with_outputs=limit)
    return replace(request, soon=soon, limit=limit)
