"""Where a Dagger engine can be found, and whether it answers, asked in a child process.

Connecting in-process can hang for good: the SDK reads the port line of `dagger session` in a
worker thread that cannot be cancelled. So the probe makes the SDK's own connection in a child
process (`python -m parapipe.engine.dagger.probe`) with a hard timeout, and kills it, and the
CLI it started, when it is late. The parent side never imports `dagger` (0.9 s): only the child
does, and the engine module once Dagger is chosen.

The SDK's errors are also turned into one line here, for the probe and for the engine alike.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any, Final

import anyio
from anyio.abc import ByteReceiveStream

from parapipe.engine import process
from parapipe.engine.process import error_line
from parapipe.errors import EngineUnavailable, UsageError

SESSION_PORT_ENV: Final = "DAGGER_SESSION_PORT"  # set by `dagger run` for the command it runs
CLI_BIN_ENV: Final = "_EXPERIMENTAL_DAGGER_CLI_BIN"  # the SDK runs this CLI instead of its own
TIMEOUT_ENV: Final = "PARAPIPE_DAGGER_TIMEOUT"
DEFAULT_TIMEOUT: Final = 10.0  # seconds for the engine to answer, the CLI's start included

SDK_REQUIREMENT: Final = "dagger-io>=0.21,<0.22"
INSTALL_HINT: Final = (
    "install the Dagger CLI (https://docs.dagger.io/install),"
    " or run under `dagger run parapipe run`"
)

_MAX_DETAIL: Final = 300
_PROBE: Final = process.Program(name="dagger", binary=sys.executable, install_hint=INSTALL_HINT)
# For the CLI to exit once it closed its stdout, before its exit status is read.
_EXIT_WAIT: Final = 2.0
_EXIT_STATUS: Final = re.compile(r"returned non-zero exit status (-?\d+)\.?\s*(.*)", re.DOTALL)


@dataclass(frozen=True, kw_only=True)
class DaggerTarget:
    """Where the SDK will find an engine: an open session, a CLI to start one, or neither (the
    SDK then downloads the CLI of its own version)."""

    session: bool  # DAGGER_SESSION_PORT is set: connect to that session, start nothing
    cli: str | None  # the CLI the SDK runs `session` with
    why: str  # for the run's first line and the error messages

    def sdk_env(self) -> dict[str, str]:
        """The variables that make the SDK run `cli` (it never looks at PATH itself)."""
        return {CLI_BIN_ENV: self.cli} if self.cli and not self.session else {}


def find_target(*, download: bool) -> DaggerTarget | None:
    """The engine Dagger would use here, or None when there is none and `download` is False."""
    if os.environ.get(SESSION_PORT_ENV):
        return DaggerTarget(
            session=True,
            cli=None,
            why=f"a Dagger session is open ({SESSION_PORT_ENV} is set, as under `dagger run`)",
        )
    if cli := os.environ.get(CLI_BIN_ENV):
        return DaggerTarget(session=False, cli=cli, why=f"the Dagger CLI {cli} ({CLI_BIN_ENV})")
    if cli := shutil.which("dagger"):
        return DaggerTarget(session=False, cli=cli, why=f"the dagger CLI on PATH ({cli})")
    if download:
        return DaggerTarget(session=False, cli=None, why="the Dagger CLI that the SDK downloads")
    return None


def sdk_installed() -> bool:
    return find_spec("dagger") is not None


def probe_timeout() -> float:
    """Seconds the engine has to answer: $PARAPIPE_DAGGER_TIMEOUT, else DEFAULT_TIMEOUT."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise UsageError(f"{TIMEOUT_ENV} must be a number of seconds above 0, not {text!r}")
    return value


async def probe(target: DaggerTarget) -> str:
    """Connect to Dagger the way a run will, in a child process, and return the engine's version.

    Raises `EngineUnavailable` with one line saying what failed and what to do, within
    `probe_timeout()` seconds whatever the CLI does.
    """
    timeout = probe_timeout()
    if not sdk_installed():
        raise EngineUnavailable(failure_message("sdk-missing", "", target))
    answer = bytearray()
    stderr: list[bytes] = []
    finished = False
    # Its own process group, which the CLI the SDK starts joins: a kill stops both.
    argv = [sys.executable, "-m", __name__]
    async with process.spawn(_PROBE, argv, env=target.sdk_env()) as child:
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as readers:
                readers.start_soon(_read_answer, child.stdout, answer)
                readers.start_soon(process.drain, child.stderr, stderr)
            await child.wait()
            finished = True
        if not finished:
            process.kill(child)
    result = _parse_answer(bytes(answer))
    if result is None:
        if not finished:
            raise EngineUnavailable(timeout_message(target, timeout))
        problem = error_line(b"".join(stderr).decode("utf-8", "replace").splitlines())
        raise EngineUnavailable(f"dagger: the probe failed: {problem}")
    if "version" in result:
        # Answered, even if closing the session then took too long: it was killed above.
        return str(result["version"])
    raise EngineUnavailable(
        failure_message(str(result.get("error")), str(result.get("detail", "")), target)
    )


def timeout_message(target: DaggerTarget, timeout: float) -> str:
    if target.session:
        return (
            f"dagger: the open Dagger session did not answer within {timeout:g} s;"
            " check that `dagger run` is still running"
        )
    cli = target.cli or "the downloaded Dagger CLI"
    return (
        f"dagger: no Dagger engine answered within {timeout:g} s (`{cli} session` printed no"
        " connection details); a first start pulls the engine image and takes longer: set"
        f" {TIMEOUT_ENV}=300 (seconds) and run again, or check that `{cli} version` works"
    )


def failure_message(kind: str, detail: str, target: DaggerTarget) -> str:
    """One line for a failure `classify` put in `kind`, naming the engine and what to do."""
    cli = target.cli or "dagger"
    if kind == "sdk-missing":
        return (
            f"dagger: the Dagger SDK is not installed; pip install 'parapipe[dagger]'"
            f" (it needs {SDK_REQUIREMENT})"
        )
    if kind == "cli-missing":
        return f"dagger: cannot run the Dagger CLI {cli}: {detail}; {INSTALL_HINT}"
    if kind == "download":
        return (
            f"dagger: no Dagger CLI was found and the SDK could not download one ({detail});"
            f" {INSTALL_HINT}"
        )
    if kind == "session":
        return (
            f"dagger: `{cli} session` failed: {detail}; check that `{cli} version` works and"
            " that its engine can start (it runs in Docker or Podman)"
        )
    if kind == "connect":
        if target.session:
            return (
                f"dagger: cannot connect to the session of `dagger run` ({SESSION_PORT_ENV}):"
                f" {detail}; check that `dagger run` is still running"
            )
        return f"dagger: cannot connect to the Dagger session: {detail}; {INSTALL_HINT}"
    return f"dagger: {detail or kind}"


def classify(exc: BaseException) -> tuple[str, str]:
    """The kind of an SDK error, for `failure_message`, and its detail as one short line."""
    from dagger import ClientConnectionError, DownloadError, SessionError, TransportError

    if isinstance(exc, DownloadError):
        detail = str(exc).removeprefix("Failed to download the Dagger CLI: ")
        return "download", one_line(detail)
    if isinstance(exc, SessionError):
        cause = exc.__cause__
        if isinstance(cause, OSError):
            return "cli-missing", cause.strerror or one_line(str(cause))
        return "session", _session_detail(str(exc))
    if isinstance(exc, ClientConnectionError | TransportError):
        detail = str(exc).removeprefix(
            "Failed to establish client connection to the Dagger session"
        )
        return "connect", one_line(detail.removeprefix(": ")) or "no answer"
    return "other", one_line(str(exc)) or type(exc).__name__


def _session_detail(message: str) -> str:
    message = message.removeprefix("Failed to start Dagger engine session: ")
    exited = _EXIT_STATUS.search(message)
    if exited:
        said = error_line(exited[2].splitlines())
        if said == "no error message":
            return f"it exited with {exited[1]}"
        return f"it exited with {exited[1]}: {one_line(said)}"
    if message.strip() == "No connection params":
        return "it exited without printing its connection details"
    return one_line(message)


def one_line(text: str) -> str:
    """`text` with its whitespace runs collapsed to single spaces, cut to a readable length."""
    collapsed = " ".join(text.split())
    if len(collapsed) > _MAX_DETAIL:
        collapsed = collapsed[: _MAX_DETAIL - 1] + "…"
    return collapsed


def _parse_answer(raw: bytes) -> dict[str, object] | None:
    line = raw.split(b"\n", 1)[0].strip()
    try:
        answer = json.loads(line) if line else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


async def _read_answer(stream: ByteReceiveStream | None, into: bytearray) -> None:
    """Read the child's one-line answer; stop at its end, whatever the child does next."""
    if stream is None:
        return
    async for chunk in stream:
        into += chunk
        if b"\n" in into:
            return


# -- the child -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Connect with the SDK, print one JSON line (the version, or what failed), exit 0 or 1."""
    try:
        import dagger  # noqa: F401
    except ImportError as exc:
        return _answer({"error": "sdk-missing", "detail": one_line(str(exc))})
    try:
        version = anyio.run(_connect_and_answer)
    except Exception as exc:
        kind, detail = classify(exc)
        return _answer({"error": kind, "detail": detail})
    return 0 if version else 1


def _judge_the_exit_once_it_is_known() -> None:
    """Make the SDK wait for a CLI that closed its stdout before it judges how it ended.

    The SDK reads the CLI's port line, and when it gets none, asks at once whether the CLI
    exited: a CLI that is still exiting (under load, it can take a while) is then reported as
    one that "exited without printing its connection details", and its exit code and error
    message are lost. Waiting for it first gives "it exited with 1: Error: ..." every time.
    """
    from dagger import SessionError
    from dagger.provisioning import _session

    impatient = _session.get_connect_params

    def patient(session: Any) -> Any:
        try:
            return impatient(session)
        except SessionError:
            cli = session.proc
            if cli.returncode is not None or cli.stdout is None:
                raise
            # Its stdout ended: it is exiting, or it closed it and runs on (then it is not
            # waited for long, and the SDK's own judgement stands).
            with suppress(subprocess.TimeoutExpired):
                cli.wait(_EXIT_WAIT)
            if not cli.returncode:
                raise
            said = _session._read_session_stderr(session)
            raise SessionError(_session.make_process_error_msg(cli, "", said)) from None

    _session.get_connect_params = patient


async def _connect_and_answer() -> str:
    import dagger
    from dagger import dag

    _judge_the_exit_once_it_is_known()

    # No log_output: the SDK then keeps the CLI's last lines of stderr for its SessionError.
    async with dagger.connection(dagger.Config()):
        version = await dag.version()
        # Answer before closing: the parent may kill this process once it has the line.
        _answer({"version": version})
    return version


def _answer(answer: dict[str, str]) -> int:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0 if "version" in answer else 1


if __name__ == "__main__":
    sys.exit(main())
