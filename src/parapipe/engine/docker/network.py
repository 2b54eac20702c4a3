"""Network namespaces lent to the pool's containers, for Docker and Podman.

Most of what a container costs to start and remove is its network: a namespace, a veth pair,
a port on the bridge, and the daemon sets these up one container at a time. Measured here
(2 CPUs, Docker 20.10.24, `benchmarks/network.sh`): 40 `docker run --rm busybox true`, 4 at a
time, took 7.0 s and 10.0 CPU-s; the same 40 started in the network of a running container
(`--network container:NAME`) took 2.8 s and 5.4 CPU-s.

So the pool keeps a few *holders*: containers of the pipeline's image, on the engine's default
network as a step's own container is, that only keep their network namespace alive. A pooled
container is created in the namespace of a holder, and its step starts only once the container
of the step before it there is gone, with every process of that step. Two steps that run at
the same time never share a network: their ports, `localhost` servers and abstract
sockets stay their own. Steps that run one after the other may: what carries over is only what
the kernel keeps of a closed socket (TIME_WAIT) and the holder's hostname, as the steps of one
GitHub Actions job share a machine. `--no-prewarm` gives every step a network of its own.

Holders start once the run's first pooled container is up (started with it, they would slow
down the first steps): at most `--jobs` + 1, and no more than half the containers still to
start, so that each serves at least two. A holder is lent to one idle container at a time; a
step takes an idle container only in a network where no step runs, or where the one that ran
has ended and its container is being removed, and then its step starts once that container
is gone (`claim`): a step never waits for another step. A container the pool starts while no
holder is free waits for one that is starting, else has a network of its own, as does one
started for a step that is waiting for it. While more than twice `--jobs` steps are still to
take a container, an idle one may also go into a network where a step runs: a step that finds
only such containers starts its own, and the one passed over serves a later step. Near the end
of the run it might serve none, so there only networks where no step runs are lent.

A holder whose CLI ended, or one lent to a container whose CLI had to be killed, is never lent
again.

Like a pooled container, a holder runs `sh` with its stdin on a pipe from parapipe: when
parapipe goes, it reads the end of its input, exits, and `--rm` removes it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Final

import anyio
from anyio.abc import Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from parapipe.engine import process
from parapipe.engine.docker import loader
from parapipe.engine.docker.argv import holder_argv, holder_name
from parapipe.errors import EngineUnavailable
from parapipe.model import Prewarm

CLOSE_WAIT: Final = 10.0  # for a holder to go once its stdin is closed
BORROW_WAIT: Final = 10.0  # for a holder that is starting, when none can be lent


@dataclass(eq=False, kw_only=True)
class NetworkHolder:
    """A holder, and the containers in its network (each until it is gone)."""

    name: str
    process: Process
    up: bool = False
    retired: bool = False  # never lent again: it ended, or may still be in use
    # No step may start in its network any more: it may be gone, or a step may still run there.
    ended: bool = False
    idle: str | None = None  # waits for a step
    taken: list[str] = field(default_factory=list)  # have a step, waiting for `claim`
    running: str | None = None  # runs a step, or ran one and is not gone yet
    step_ended: bool = False  # the step of `running` ended

    def free(self) -> bool:
        """Whether a step taking a container in its network would start at once, or once a
        step that ended is torn down: it never waits for a step that still runs."""
        return not self.taken and (self.running is None or self.step_ended)


class NetworkLender:
    """The holders of one run. A holder is lent once it is up, to one container at a time that
    waits for a step; a step starts in a holder's network only once no other step runs there
    (`claim`) and the container that ran one is gone."""

    def __init__(self, program: process.Program, note: Callable[[str], None]) -> None:
        self.program = program
        self.tasks: TaskGroup | None = None  # set while the pool is open
        self.disabled = ""
        # Holders start once the run's first container is up: started with it, they would
        # slow down the first steps, which hold up every later one.
        self.opened = False
        self._note = note
        self._holders: dict[str, NetworkHolder] = {}
        self._changed = anyio.Event()  # set when a holder comes up, is freed or retires
        self._started = 0
        self._launching = 0  # holders asked for whose CLI is not started yet
        self._failed_starts = process.FailedStarts()  # holders that ended before they were up

    def borrow(
        self, container: str, *, for_step: bool = False, busy_too: bool = False
    ) -> str | None:
        """The name of a holder now lent to `container`; None: a network of its own. A holder
        whose network no step uses comes first; with `busy_too`, one where a step runs will do
        (a step then passes `container` over until that step ends). `for_step`: a step has
        taken `container` already, so only a holder where no step runs will do."""
        candidates = [
            h
            for h in self._holders.values()
            if h.up
            and not h.retired
            and h.idle is None
            and (h.free() or (busy_too and not for_step))
        ]
        if not candidates:
            return None
        holder = max(candidates, key=NetworkHolder.free)
        if for_step:
            holder.taken.append(container)
        else:
            holder.idle = container
        return holder.name

    async def borrow_soon(self, container: str, *, busy_too: bool) -> str | None:
        """As `borrow`, but when no holder can be lent and one is still starting, wait for it
        (a while: a holder that never comes up must not stop the pool)."""
        with anyio.move_on_after(BORROW_WAIT):
            while (name := self.borrow(container, busy_too=busy_too)) is None:
                if not self._starting():
                    return None
                await self._changed.wait()
            return name
        return None

    def free(self, holder: str) -> bool:
        found = self._holders.get(holder)
        return found is not None and not found.ended and found.free()

    def ended(self, holder: str) -> bool:
        found = self._holders.get(holder)
        return found is None or found.ended

    def take(self, holder: str, container: str) -> None:
        """A step took `container`, idle in `holder`'s network: it may lend it again."""
        if (found := self._holders.get(holder)) is not None and found.idle == container:
            found.idle = None
            found.taken.append(container)
            self._signal()

    async def claim(self, holder: str, container: str) -> bool:
        """Wait until the step before `container`'s in `holder`'s network is over and its
        container gone, then mark `container` as running a step. False when no step may start
        there any more: the step must start a container of its own."""
        while (found := self._holders.get(holder)) is not None and (
            found.running is not None or found.taken[:1] != [container]
        ):
            if container not in found.taken or found.ended:
                return False
            await self._changed.wait()
        if found is None or found.ended:
            return False
        found.taken.remove(container)
        found.running = container
        found.step_ended = False
        return True

    def step_ended(self, holder: str, container: str) -> None:
        if (found := self._holders.get(holder)) is not None and found.running == container:
            found.step_ended = True

    def give_back(self, holder: str, container: str, *, in_use: bool) -> None:
        """`container` is gone, unless `in_use`: its CLI was killed, so the container may still
        run, and the holder is never lent again."""
        found = self._holders.get(holder)
        if found is None:
            return
        if found.idle == container:
            found.idle = None
        if container in found.taken:
            found.taken.remove(container)
        if in_use:
            # Its step may still run: no other may start there.
            found.ended = True
            self._retire(found, "lent to a container that may still run")
        elif found.running == container:
            found.running = None
        self._signal()

    def _starting(self) -> int:
        return self._launching + sum(not h.up and not h.retired for h in self._holders.values())

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def top_up(self, request: Prewarm, *, still_to_start: int) -> None:
        """Start holders for the containers the pool may still start, `still_to_start`: as
        many as can serve two of them each, at most `--jobs` + 1 (a step runs in each, and
        one more is being torn down); none before `opened`."""
        if not self.opened or self.disabled or self.tasks is None:
            return
        alive = self._launching + sum(not h.retired for h in self._holders.values())
        for _ in range(min(request.jobs + 1, still_to_start // 2) - alive):
            self._launching += 1
            self.tasks.start_soon(self._start, request)

    async def close(self) -> None:
        """End every holder; call it shielded, once no container uses one."""
        for holder in list(self._holders.values()):
            holder.retired = True
            if holder.process.stdin is not None:
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await holder.process.stdin.aclose()
        async with anyio.create_task_group() as ending:
            for holder in list(self._holders.values()):
                ending.start_soon(self._end, holder)

    async def _start(self, request: Prewarm) -> None:
        self._started += 1
        name = holder_name(request.run_id, self._started)
        try:
            # Shielded: a holder started and then lost would only go when parapipe does.
            with anyio.CancelScope(shield=True):
                child = await process.start(
                    self.program,
                    holder_argv(self.program.binary, request, name),
                    stdin=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
        except EngineUnavailable as exc:
            self._disable(str(exc))
            return
        finally:
            self._launching -= 1
            self._signal()
        holder = NetworkHolder(name=name, process=child)
        self._holders[name] = holder
        self._note(f"{name} starting (a network to lend)")
        assert child.stdout is not None
        output = BufferedByteReceiveStream(child.stdout)
        up = await process.ready_line(output, loader.HOLDER_READY_LINE)
        if up and not holder.retired:
            holder.up = True
            self._signal()
            self._failed_starts.up()
            self._note(f"{name} is up: its network can be lent")
        else:
            holder.ended = True
            self._retire(holder, "ended before it was up")
            if self._failed_starts.failed():
                self._disable(
                    f"{self._failed_starts.in_a_row} holders in a row ended before they were up"
                )
            return
        # Read on until the holder ends: its CLI must never block on a full pipe.
        await process.drain(output)
        holder.ended = True
        self._retire(holder, "ended")

    def _retire(self, holder: NetworkHolder, why: str) -> None:
        if not holder.retired:
            holder.retired = True
            self._note(f"{holder.name} is not lent any more: {why}")
            self._signal()

    def _disable(self, why: str) -> None:
        if not self.disabled:
            self.disabled = why
            self._note(f"no more network holders: {why}")

    async def _end(self, holder: NetworkHolder) -> None:
        # Killing the CLI leaves the container: it carries the run's label, for the runner's
        # final sweep.
        await process.reap(holder.process, wait=CLOSE_WAIT)
