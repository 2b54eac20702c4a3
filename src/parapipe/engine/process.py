"""Running a command-line client: the one way the engines start, read, wait for and stop one.

Every child starts in a session of its own: a terminal's Ctrl-C is parapipe's to handle, and
the child's own children (a buildx plugin, the CLI a probe starts) share its process group, so
one signal stops them all. Children are killed with SIGKILL, never SIGTERM: the clients keep no
state worth a clean exit, and `docker run` would forward SIGTERM to its container and wait for
it instead of exiting.

A child's output is read until it ends before its exit is judged: a process can exit while
what it wrote is still in the pipe, and the error message is what the user needs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import IO, Final

import anyio
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from parapipe.errors import EngineError, EngineUnavailable

REAP_TIMEOUT: Final = 30.0  # for a child to go once it was killed or its pipes were closed
MAX_LINE: Final = 64 * 1024  # longer output without a newline is passed on in pieces
TAIL_LINES: Final = 40  # of a streamed command's output, kept for its error message

_ERROR_WORD: Final = re.compile(r"\berror\b", re.IGNORECASE)
_HELP_POINTER: Final = re.compile(r"\s*(Run|See) '\S+ .*--help'")
_ERROR_LOOKBACK: Final = 5

Input = int | IO[bytes] | None  # what a child's stdin is: DEVNULL, PIPE or an open file
Output = int | IO[bytes]  # its stdout: PIPE, or a file descriptor or file (an archive's pipe)
LineSink = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class Program:
    """A command-line client, as error messages name it."""

    name: str  # the engine: "docker", "podman", "dagger"
    binary: str  # what is run
    install_hint: str  # how to get it, when it is missing


@dataclass(frozen=True, kw_only=True)
class Finished:
    """A child that ran to its end, with all it wrote."""

    code: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return text(self.stdout)

    @property
    def problem(self) -> str:
        """The line of its stderr that says what went wrong."""
        return error_line(text(self.stderr).splitlines())


async def start(
    program: Program,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: Input = subprocess.DEVNULL,
    stderr: int = subprocess.PIPE,
    stdout: Output = subprocess.PIPE,
) -> Process:
    """Start `argv` in a session of its own, with `env` added to parapipe's environment. A
    program that cannot be run is `EngineUnavailable`, naming it and how to install it."""
    try:
        return await anyio.open_process(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, **env} if env else None,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise EngineUnavailable(
            f"{program.name}: the `{program.binary}` command was not found; {program.install_hint}"
        ) from exc
    except OSError as exc:
        raise EngineUnavailable(
            f"{program.name}: cannot run `{program.binary}`: {exc.strerror or exc}"
        ) from exc


def kill(process: Process) -> None:
    """SIGKILL `process` and every process of its group (its session, from `start`)."""
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with suppress(ProcessLookupError):
            process.kill()


async def reap(process: Process, wait: float = REAP_TIMEOUT) -> bool:
    """Let `process` exit within `wait` seconds, else kill its group; then release its pipes.
    Shielded: call it from cleanup. Whether it had to be killed."""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(wait):
            await process.wait()
        killed = process.returncode is None
        kill(process)
        with anyio.move_on_after(REAP_TIMEOUT):
            await process.aclose()
    return killed


@asynccontextmanager
async def spawn(
    program: Program,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: Input = subprocess.DEVNULL,
    stdout: Output = subprocess.PIPE,
) -> AsyncIterator[Process]:
    """`start`, for the body's time: the child's group is killed if the body does not finish
    normally (cancelled, failed), and the child is reaped however it ends."""
    process = await start(program, argv, env=env, stdin=stdin, stdout=stdout)
    try:
        yield process
    except BaseException:
        kill(process)
        raise
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(REAP_TIMEOUT):
            await process.aclose()


async def attached_to_terminal(
    program: Program, argv: Sequence[str], *, env: Mapping[str, str] | None = None
) -> int:
    """Run `argv` on parapipe's own stdin, stdout and stderr (an interactive shell) and return its
    exit code. Unlike `start`, in parapipe's process group: the terminal is the child's to read
    until it exits, and a Ctrl-C typed there reaches the child, not parapipe."""
    try:
        child = await anyio.open_process(
            list(argv),
            stdin=None,
            stdout=None,
            stderr=None,
            env={**os.environ, **env} if env else None,
        )
    except OSError as exc:
        raise EngineUnavailable(
            f"{program.name}: cannot run `{program.binary}`: {exc.strerror or exc}"
        ) from exc
    try:
        return await child.wait()
    except BaseException:
        with suppress(ProcessLookupError):
            child.kill()
        raise
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(REAP_TIMEOUT):
            await child.aclose()


async def capture(
    program: Program,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: Input = subprocess.DEVNULL,
) -> Finished:
    """Run `argv` to its end and keep all it wrote; the caller bounds the time."""
    async with spawn(program, argv, env=env, stdin=stdin) as process:
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        async with anyio.create_task_group() as readers:
            readers.start_soon(drain, process.stdout, stdout)
            readers.start_soon(drain, process.stderr, stderr)
        code = await process.wait()
    return Finished(code=code, stdout=b"".join(stdout), stderr=b"".join(stderr))


async def query(program: Program, argv: Sequence[str], within: float) -> Finished:
    """`capture`, within `within` seconds, else an `EngineError` saying it got no answer."""
    try:
        with anyio.fail_after(within):
            return await capture(program, argv)
    except TimeoutError:
        raise EngineError(
            f"{program.name}: `{' '.join(argv[:3])}` got no answer within {within:g} s"
        ) from None


async def stream(
    program: Program, argv: Sequence[str], sink: LineSink, *, env: Mapping[str, str] | None = None
) -> tuple[int, list[str]]:
    """Run `argv`, passing its stdout and stderr to `sink` line by line as they come; its exit
    code and its last lines, for an error message."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def keep(line: str) -> None:
        tail.append(line)
        sink(line)

    async with spawn(program, argv, env=env) as process:
        async with anyio.create_task_group() as pumps:
            pumps.start_soon(pump_lines, process.stdout, keep)
            pumps.start_soon(pump_lines, process.stderr, keep)
        code = await process.wait()
    return code, list(tail)


async def pump_lines(output: ByteReceiveStream | None, sink: LineSink) -> None:
    """Pass `output` to `sink` one decoded line at a time, as the lines arrive."""
    if output is None:
        return
    pending = bytearray()
    with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
        async for chunk in output:
            pending += chunk
            *lines, rest = pending.split(b"\n")
            for line in lines:
                sink(_line_text(line))
            while len(rest) > MAX_LINE:
                sink(_line_text(rest[:MAX_LINE]))
                rest = rest[MAX_LINE:]
            pending = rest
    if pending:
        sink(_line_text(pending))


async def drain(output: ByteReceiveStream | None, into: list[bytes] | None = None) -> None:
    """Read `output` to its end, keeping it in `into` if given: a child blocked on a full pipe
    never exits."""
    if output is None:
        return
    with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
        async for chunk in output:
            if into is not None:
                into.append(chunk)


async def ready_line(output: BufferedByteReceiveStream, expected: bytes) -> bool:
    """Whether the first line of `output` is `expected`: a child that says it is up. False when
    it said something else or ended first."""
    try:
        return await output.receive_until(b"\n", 4096) == expected
    except (
        anyio.EndOfStream,
        anyio.IncompleteRead,
        anyio.DelimiterNotFound,
        anyio.ClosedResourceError,
        anyio.BrokenResourceError,
    ):
        return False


class FailedStarts:
    """Children that should stay up (pooled containers, network holders) and ended before they
    were: after `limit` in a row, starting more is pointless."""

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self.in_a_row = 0

    def up(self) -> None:
        self.in_a_row = 0

    def failed(self) -> bool:
        """Count one more; whether that makes `limit` in a row."""
        self.in_a_row += 1
        return self.in_a_row >= self.limit


def error_line(lines: Iterable[str]) -> str:
    """The line of a CLI's output that says what went wrong.

    The last line saying "error" among the last few, since a CLI often follows its error with
    a hint or a link; else simply the last line. Blank lines and pointers to `--help` do not
    count.
    """
    meaningful = [line.strip() for line in lines if line.strip() and not _HELP_POINTER.match(line)]
    if not meaningful:
        return "no error message"
    recent = meaningful[-_ERROR_LOOKBACK:]
    return next((line for line in reversed(recent) if _ERROR_WORD.search(line)), meaningful[-1])


def text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _line_text(raw: bytes | bytearray) -> str:
    return bytes(raw).decode("utf-8", errors="replace").removesuffix("\r")
