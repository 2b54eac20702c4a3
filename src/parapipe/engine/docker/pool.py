"""Containers started ahead of the steps that will run in them, for Docker and Podman.

Starting a container costs about 0.3 s, nearly all of it the daemon's (namespaces, network,
mounts); on a chain of short steps that is most of the run. Every step runs in the same image, so
while earlier steps run, the pool starts containers from it, and a step that becomes ready takes
one that is already up.

A pooled container is created as `argv.run_argv` creates a step's: the same image, workdir
and labels (plus `io.parapipe.pool=1`, and without the step's), attached with `-i`. Like a step's,
it has `--rm`, unless it is meant for a step with outputs, which are copied out once it stopped.
Its first process is `LOADER`, a few lines of `sh`: it prints a ready line, reads a script from
stdin up to a line holding a nonce chosen for that container, and `eval`s it. The script that a
step sends (`step_script`) exports the step's env and secrets and `exec`s the very command a
step's own container runs (`step_command`, which also says its exit code as it ends, below). So,
as without the pool:

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

A step that needs what only `run` can give (cache volumes; an env file for a secret whose name the
CLI reads itself), or whose env names a variable that a shell refuses to export (bash's read-only
`UID`, `PPID`, ...), never takes a pooled container. Nor does any step when the image has an
ENTRYPOINT: it would run as the container starts, before the step's inputs are in.

A pooled step is done when its shell says so (`marked_step_command`), not ~0.1 s later when the
daemon has torn its container down; a step with outputs waits for that, as they are copied out of
a stopped container.

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
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, TextIO

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from parapipe.engine.api import LineSink, StepRun, step_command
from parapipe.engine.docker.argv import passed_through_cli_env, remove_argv
from parapipe.engine.docker.network import NetworkLender, network_flags
from parapipe.model import LABEL_RUN, Prewarm

POOL_LABEL: Final = "io.parapipe.pool"
JOURNAL: Final = "pool.txt"  # not `.log`: those are the steps'
READY_LINE: Final = b"parapipe-pool: ready"

# $1 is the nonce. The loader's own variables are not exported, so the step never sees them.
LOADER: Final = """printf 'parapipe-pool: ready\\n'
script=
while IFS= read -r line; do
  if [ "$line" = "$1" ]; then eval "$script"; exit; fi
  script="$script$line
"
done
"""

QUERY_TIMEOUT: Final = 60.0  # one `image inspect` or `rm`
CLOSE_TIMEOUT: Final = 30.0  # removing what is left when the run ends
REMOVE_BATCH_DELAY: Final = 0.5  # seconds a finished container may wait to be removed
CLOSE_WAIT: Final = 10.0  # for the CLIs of stopping containers, when the run ends
# Pooled containers in a row that ended before they were ready: the pool then stops starting
# any, and every later step starts its own container as without the pool.
_MAX_FAILED_STARTS: Final = 2

_SHELL_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Read-only in bash, which is `sh` in some images: `export UID=...` would stop the loader.
_UNEXPORTABLE: Final = frozenset({"BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID"})
_NO_ENTRYPOINT: Final = frozenset({"", "null", "[]"})


# -- what is sent where: pure functions ------------------------------------------------------


def pool_container_name(run_id: str, number: int) -> str:
    """`parapipe-<run_id>.pool-<n>`: a step's is `parapipe-<run_id>-<step>`, so the two never
    meet, whatever the steps are called."""
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", f"parapipe-{run_id}.pool-{number}")


def pool_run_argv(
    binary: str,
    request: Prewarm,
    name: str,
    nonce: str,
    *,
    keep: bool = False,
    network: str | None = None,
) -> list[str]:
    """`docker run -i` for a pooled container: `run_argv`'s flags for a container of `request`,
    with `LOADER` in place of the step's label, env and command. `--rm` unless `keep`, as a step
    with outputs is `create`d (without it) to copy them out once it stopped. In the network of
    the holder `network` (`network`), if any."""
    argv = [binary, "run", "-i", *([] if keep else ["--rm"]), "--pull=never", "--name", name]
    argv += network_flags(network)
    labels = {**request.labels, LABEL_RUN: request.run_id, POOL_LABEL: "1"}
    for label, value in labels.items():
        argv += ["--label", f"{label}={value}"]
    return [*argv, "-w", request.workdir, request.image_id, "sh", "-c", LOADER, "parapipe", nonce]


def entrypoint_argv(binary: str, image_id: str) -> list[str]:
    return [binary, "image", "inspect", "--format", "{{json .Config.Entrypoint}}", image_id]


def step_script(run: StepRun, nonce: str) -> bytes:
    """What a pooled container's loader runs: export the step's variables, then become the
    step's own command (`marked_step_command`). The nonce line, last, is what starts it."""
    variables = {**run.env, **run.secrets}
    lines = [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    lines += ["exec " + shlex.join(marked_step_command(run.commands, nonce)), nonce]
    return ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")


def marked_step_command(commands: tuple[str, ...], nonce: str) -> list[str]:
    """`step_command`, whose shell also says its exit code as it exits: `<nonce> <code>` in a
    line of its own, after all it wrote (`ExitMarker` takes the line out of the log).

    The attached CLI returns the same code about 0.1 s later, once the daemon has torn the
    container down; the marker lets the next step start meanwhile.
    """
    sh, flag, script, *arguments = step_command(commands)
    trap = f'trap \'printf "\\n%s %d\\n" {nonce} "$?"\' EXIT\n'
    return [sh, flag, trap + script, *arguments]


class ExitMarker:
    """A pooled step's output on its way to the log, less the marker line of
    `marked_step_command` and the line break put before it; `code` is the marker's."""

    def __init__(self, nonce: str, log: LineSink) -> None:
        self.code: int | None = None
        self.on_exit: Callable[[], None] = _ignore  # called once the marker is read
        self._log = log
        self._marker = re.compile(rf"{re.escape(nonce)} (\d+)")
        self._blank_held = False  # a blank line, until it is known not to precede the marker

    def log(self, line: str) -> None:
        found = self._marker.fullmatch(line) if self.code is None else None
        if found is not None:
            self.code = int(found[1])
            self._blank_held = False
            self.on_exit()
            return
        self.flush()
        if line == "" and self.code is None:
            self._blank_held = True
        else:
            self._log(line)

    def flush(self) -> None:
        """The output ended without a marker (the shell was killed): pass on what was held."""
        if self._blank_held:
            self._blank_held = False
            self._log("")


def _ignore() -> None:
    pass


def can_take(run: StepRun, request: Prewarm) -> bool:
    """Whether `run` can start in a container made for `request`: the same run, image, workdir
    and labels, no volumes, and variables that the loader's shell can export. A secret whose
    name the CLI reads itself goes in an env file of `run`'s own, with that path's rules."""
    return (
        (run.run_id, run.image_id, run.workdir)
        == (request.run_id, request.image_id, request.workdir)
        and dict(run.labels) == dict(request.labels)
        and not run.caches
        and all(_exportable(name) for name in (*run.env, *run.secrets))
        and all(passed_through_cli_env(name) for name in run.secrets)
    )


def _exportable(name: str) -> bool:
    return _SHELL_NAME.fullmatch(name) is not None and name not in _UNEXPORTABLE


async def _said(container: PooledContainer) -> str:
    """The last line its CLI wrote to stderr, for the journal."""
    said = b""
    if container.process.stderr is not None:
        with anyio.move_on_after(1), suppress(anyio.EndOfStream, anyio.ClosedResourceError):
            said = await container.process.stderr.receive(4096)
    lines = said.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no error message"


# -- the pool ------------------------------------------------------------------------------------


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


@asynccontextmanager
async def open_pool(binary: str, run_dir: Path) -> AsyncIterator[ContainerPool]:
    """A pool for one run, which starts nothing until asked; all of it is removed on the way
    out, however the run ends."""
    failure: BaseException | None = None
    pool = ContainerPool(binary, run_dir / JOURNAL)
    try:
        async with anyio.create_task_group() as tasks:
            pool.tasks = tasks
            pool.lender.tasks = tasks
            tasks.start_soon(pool.fill_forever)
            tasks.start_soon(pool.remove_forever)
            try:
                yield pool
            except BaseException as exc:
                # Raised again below: from inside the task group it would reach the runner
                # wrapped in an ExceptionGroup.
                failure = exc
            finally:
                pool.closing = True
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

    def __init__(self, binary: str, journal: Path) -> None:
        self.binary = binary
        self.closing = False
        self.disabled = ""  # why the pool stopped starting containers
        self.tasks: TaskGroup | None = None  # the background work, while the pool is open
        self._journal_path = journal
        self._journal: TextIO | None = None
        self._opened = time.monotonic()
        self._request: Prewarm | None = None
        self._idle: dict[bool, deque[PooledContainer]] = {False: deque(), True: deque()}
        self._live: dict[str, PooledContainer] = {}  # those whose CLI is not reaped yet
        self._unremoved: set[str] = set()  # containers that may still exist
        self._to_remove: list[str] = []
        self._wake_filler = anyio.Event()
        self._wake_remover = anyio.Event()
        self._started = 0
        self._failed_starts = 0
        self._checked_image: str | None = None
        self._checking = anyio.Lock()
        self.lender = NetworkLender(binary, self._note)

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
            await stdin.send(step_script(run, container.nonce))
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

    async def remove_forever(self) -> None:
        while True:
            await self._wake_remover.wait()
            # One `rm` for the containers of the steps that end meanwhile: each call is a CLI
            # process, and the CPU it takes competes with the steps.
            await anyio.sleep(REMOVE_BATCH_DELAY)
            self._wake_remover = anyio.Event()
            names, self._to_remove = self._to_remove, []
            await self._remove(names)

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
            return await self._check_image(image_id)

    async def _check_image(self, image_id: str) -> bool:
        if self._checked_image == image_id:
            return True
        if self.disabled:
            return False
        answer: subprocess.CompletedProcess[bytes] | None = None
        with anyio.move_on_after(QUERY_TIMEOUT), suppress(OSError):
            answer = await anyio.run_process(
                entrypoint_argv(self.binary, image_id), check=False, start_new_session=True
            )
        if answer is None or answer.returncode != 0:
            self._disable(f"cannot read the image's ENTRYPOINT ({image_id})")
            return False
        entrypoint = answer.stdout.decode(errors="replace").strip()
        if entrypoint not in _NO_ENTRYPOINT:
            self._disable(
                f"the image has an ENTRYPOINT, {entrypoint}, which must start with the step"
            )
            return False
        self._checked_image = image_id
        return True

    async def _start(
        self, request: Prewarm, *, keep: bool, for_step: bool = False
    ) -> PooledContainer | None:
        """A container for the pool, or `for_step`: for a step that waits for it now."""
        self._started += 1
        name = pool_container_name(request.run_id, self._started)
        nonce = secrets.token_hex(16)
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
            # A session of its own keeps a terminal's Ctrl-C away, as for every other CLI call.
            process = await anyio.open_process(
                pool_run_argv(self.binary, request, name, nonce, keep=keep, network=network),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            if network is not None:
                self.lender.give_back(network, name, in_use=False)
            self._disable(f"cannot run `{self.binary}`: {exc.strerror or exc}")
            return None
        assert process.stdout is not None
        container = PooledContainer(
            name=name,
            nonce=nonce,
            keep=keep,
            process=process,
            output=BufferedByteReceiveStream(process.stdout),
            network=network,
        )
        self._live[name] = container
        self._unremoved.add(name)
        where = f" in the network of {network}" if network else ""
        self._note(f"{name} starting{where}" + (" (kept when stopped)" if keep else ""))
        self._top_up_networks()
        assert self.tasks is not None
        self.tasks.start_soon(self._watch, container)
        return container

    async def _watch(self, container: PooledContainer) -> None:
        """Wait for the loader's ready line; a CLI that ends before it ran nothing."""
        try:
            line = await container.output.receive_until(b"\n", 4096)
            container.up = line == READY_LINE
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.DelimiterNotFound,
            anyio.ClosedResourceError,
            anyio.BrokenResourceError,
        ):
            container.up = False
        if container.up:
            self._failed_starts = 0
            self._note(f"{container.name} up")
            if not self.lender.opened:
                self.lender.opened = True
                self._top_up_networks()
        elif not container.discarded:
            self._failed_starts += 1
            self._note(f"{container.name} ended before it was up: {await _said(container)}")
            if container in self._idle[container.keep]:
                self._idle[container.keep].remove(container)
                self._discard(container)
            if self._failed_starts >= _MAX_FAILED_STARTS:
                self._disable(
                    f"{self._failed_starts} containers in a row ended before they were up"
                )
        container.ready.set()
        self._wake_filler.set()

    def _discard(self, container: PooledContainer) -> None:
        container.discarded = True
        if container.process.returncode is None and not container.sent:
            # Without its CLI, an idle container reads the end of its stdin and exits by
            # itself, which spares the daemon killing it.
            with suppress(ProcessLookupError):
                container.process.kill()
        if not container.keep and container.up:
            # `--rm`, and it stops by itself: the daemon removes it, then its CLI exits.
            self._unremoved.discard(container.name)
            if not self.closing and self.tasks is not None:
                self.tasks.start_soon(self._reap, container)  # else `close` reaps it
            return
        self._to_remove.append(container.name)
        self._wake_remover.set()

    async def _remove(self, names: list[str]) -> None:
        if not names:
            return
        with anyio.move_on_after(QUERY_TIMEOUT), suppress(OSError):
            # A container already gone is what we wanted; one that `rm` could not remove
            # still carries the run's label for the final sweep.
            await anyio.run_process(
                remove_argv(self.binary, names), check=False, start_new_session=True
            )
        self._unremoved.difference_update(names)
        self._note(f"removed {', '.join(names)}")
        for name in names:
            if (container := self._live.get(name)) is not None:
                await self._reap(container)

    async def _reap(self, container: PooledContainer, wait: float = QUERY_TIMEOUT) -> None:
        """Let the CLI of `container` exit, reading what it still writes (once a step ended
        early, nothing else does: a full pipe would hold it up); kill it if it does not."""
        process = container.process
        with anyio.move_on_after(wait):
            if not self.closing:
                await container.ready.wait()  # `_watch` reads the output until then
            async with anyio.create_task_group() as drains:
                drains.start_soon(_drain, container.output)
                drains.start_soon(_drain, process.stderr)
            await process.wait()
        killed = process.returncode is None
        if killed:
            with suppress(ProcessLookupError):
                process.kill()
        with anyio.move_on_after(QUERY_TIMEOUT):
            await process.aclose()
        self._live.pop(container.name, None)
        if container.network is not None:
            self.lender.give_back(container.network, container.name, in_use=killed)
            container.network = None

    async def close(self) -> None:
        """Remove every container of the pool that may be left and reap every CLI; call it
        shielded."""
        self.closing = True
        for idle in self._idle.values():
            while idle:
                self._discard(idle.popleft())
        # The CLIs of the steps' `--rm` containers exit once the daemon removed them: waiting
        # for that spares the runner's final sweep finding them still there.
        async with anyio.create_task_group() as reaping:
            for container in list(self._live.values()):
                reaping.start_soon(self._reap, container, CLOSE_WAIT)
        self._to_remove.clear()
        await self._remove(sorted(self._unremoved))
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


async def _drain(stream: ByteReceiveStream | None) -> None:
    if stream is not None:
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            async for _ in stream:
                pass


def _counts(request: Prewarm, keep: bool) -> tuple[int, int]:
    """(soon, limit) of the steps that want this kind of container."""
    if keep:
        return request.soon_with_outputs, request.limit_with_outputs
    return request.soon, request.limit


def _with_counts(request: Prewarm, keep: bool, soon: int, limit: int) -> Prewarm:
    if keep:
        return replace(request, soon_with_outputs=soon, limit_with_outputs=limit)
    return replace(request, soon=soon, limit=limit)
