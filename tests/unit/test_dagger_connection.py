"""Reaching Dagger, and failing to: every way it fails ends within 15 s, as one line, exit 3.

The Dagger CLI is faked with small scripts through `_EXPERIMENTAL_DAGGER_CLI_BIN`, the variable
the SDK reads the CLI's path from; no engine is needed and none is contacted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import graphql
import pytest

from parapipe.engine.dagger import probe as dagger_probe
from parapipe.engine.dagger.probe import DaggerTarget, classify, failure_message, find_target
from parapipe.engine.registry import choose_engine
from parapipe.errors import UsageError
from tests.helpers.docker import BUSYBOX

# The bound for every failure path, start to exit.
FAILS_WITHIN = 15.0

DAGGER_VARIABLES = ("DAGGER_SESSION_PORT", "DAGGER_SESSION_TOKEN", dagger_probe.CLI_BIN_ENV)


def fake_cli(folder: Path, name: str, body: str) -> Path:
    script = folder / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def parapipe(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`parapipe run` in `project`, with no Dagger session or CLI but those in `env`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in (*DAGGER_VARIABLES, dagger_probe.TIMEOUT_ENV, "PARAPIPE_ENGINE")
    }
    # A CLI the SDK downloaded earlier, in the real cache, must not answer for a fake one.
    base["XDG_CACHE_HOME"] = str(project / "cache")
    return subprocess.run(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "--output", "plain", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=FAILS_WITHIN,  # raises, and so fails the test, past the bound
        check=False,
        env={**base, **env},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "ci.yaml").write_text(
        f"name: dagger-fails\nimage: {{from: {BUSYBOX}}}\nsteps:\n  a: {{run: 'true'}}\n"
    )
    return tmp_path


def one_line_exit_3(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("parapipe: dagger: "), lines[0]
    return lines[0]


def test_no_cli_at_the_configured_path(project: Path) -> None:
    line = one_line_exit_3(
        parapipe(project, "--engine", "dagger", _EXPERIMENTAL_DAGGER_CLI_BIN="/nowhere/dagger")
    )
    assert "cannot run the Dagger CLI /nowhere/dagger: No such file or directory" in line
    assert "install the Dagger CLI (https://docs.dagger.io/install)" in line


def test_no_cli_anywhere_and_none_can_be_downloaded(project: Path) -> None:
    # No dagger on PATH: the SDK tries to download its CLI, through a proxy that refuses.
    path = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "dagger").exists()
    )
    line = one_line_exit_3(
        parapipe(
            project, "--engine", "dagger", PATH=path, HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY=""
        )
    )
    assert "no Dagger CLI was found and the SDK could not download one" in line
    assert "run under `dagger run parapipe run`" in line


def test_a_cli_that_exits_1(project: Path) -> None:
    cli = fake_cli(project, "dagger", 'echo "Error: no container runtime found" >&2\nexit 1\n')
    line = one_line_exit_3(
        parapipe(project, "--engine", "dagger", _EXPERIMENTAL_DAGGER_CLI_BIN=str(cli))
    )
    assert f"`{cli} session` failed: it exited with 1: Error: no container runtime found" in line
    assert f"check that `{cli} version` works" in line


def test_a_cli_still_exiting_when_its_stdout_ends_is_judged_by_its_exit(project: Path) -> None:
    # Under load, the SDK could find the CLI's stdout closed before the CLI had exited, and
    # said it "exited without printing its connection details": here that happens every time.
    body = 'exec >&-\nsleep 0.5\necho "Error: no container runtime found" >&2\nexit 1\n'
    cli = fake_cli(project, "dagger", body)
    line = one_line_exit_3(
        parapipe(project, "--engine", "dagger", _EXPERIMENTAL_DAGGER_CLI_BIN=str(cli))
    )
    assert f"`{cli} session` failed: it exited with 1: Error: no container runtime found" in line


def test_a_cli_that_never_prints_its_port_is_killed(project: Path) -> None:
    pid_file = project / "cli.pid"
    cli = fake_cli(project, "dagger", f"echo $$ > {pid_file}\nexec sleep 600\n")
    line = one_line_exit_3(
        parapipe(project, "--engine", "dagger", _EXPERIMENTAL_DAGGER_CLI_BIN=str(cli))
    )
    assert "no Dagger engine answered within 10 s" in line
    assert f"set {dagger_probe.TIMEOUT_ENV}=300" in line
    # The probe's process group was killed: the CLI it started is not left waiting.
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_a_session_that_is_gone(project: Path) -> None:
    line = one_line_exit_3(
        parapipe(project, "--engine", "dagger", DAGGER_SESSION_PORT="9", DAGGER_SESSION_TOKEN="x")
    )
    assert "cannot connect to the session of `dagger run` (DAGGER_SESSION_PORT)" in line
    assert "check that `dagger run` is still running" in line


def test_a_bad_timeout_is_a_usage_error(project: Path) -> None:
    result = parapipe(project, "--engine", "dagger", PARAPIPE_DAGGER_TIMEOUT="soon")
    assert result.returncode == 2, result.stderr
    assert "PARAPIPE_DAGGER_TIMEOUT must be a number of seconds above 0, not 'soon'" in (
        result.stderr
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# -- where Dagger is looked for ------------------------------------------------------------


def test_an_open_session_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGGER_SESSION_PORT", "1234")
    monkeypatch.setenv(dagger_probe.CLI_BIN_ENV, "/opt/dagger")
    target = find_target(download=False)
    assert target is not None
    assert target.session
    assert target.sdk_env() == {}  # the SDK connects to the session; it starts no CLI
    assert "DAGGER_SESSION_PORT" in target.why


def test_a_cli_on_path_is_handed_to_the_sdk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in DAGGER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    cli = fake_cli(tmp_path, "dagger", "exit 0\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    target = find_target(download=False)
    assert target == DaggerTarget(
        session=False, cli=str(cli), why=f"the dagger CLI on PATH ({cli})"
    )
    # The SDK never looks at PATH: it must be told.
    assert target.sdk_env() == {dagger_probe.CLI_BIN_ENV: str(cli)}


def test_without_a_session_or_a_cli_auto_does_not_consider_dagger(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in DAGGER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_target(download=False) is None
    forced = find_target(download=True)
    assert forced is not None
    assert forced.cli is None  # the SDK downloads the CLI of its own version


def test_the_probe_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dagger_probe.TIMEOUT_ENV, raising=False)
    assert dagger_probe.probe_timeout() == 10.0
    monkeypatch.setenv(dagger_probe.TIMEOUT_ENV, "300")
    assert dagger_probe.probe_timeout() == 300.0
    for bad in ("0", "-1", "nan", "soon"):
        monkeypatch.setenv(dagger_probe.TIMEOUT_ENV, bad)
        with pytest.raises(UsageError):
            dagger_probe.probe_timeout()


# -- the SDK's errors, as one line each ----------------------------------------------------


def test_every_sdk_error_becomes_one_line_naming_the_fix() -> None:
    import dagger

    target = DaggerTarget(session=False, cli="/usr/bin/dagger", why="")
    missing = dagger.SessionError(FileNotFoundError(2, "No such file or directory"))
    missing.__cause__ = missing.args[0]
    exited = dagger.SessionError(
        "Command '/usr/bin/dagger session --label a' returned non-zero exit status 1."
        " time=1 level=info msg=starting\nError: failed to connect to engine\nRun 'dagger --help'"
    )
    cases = [
        (dagger.DownloadError("Failed to download checksums: timed out"), "download"),
        (missing, "cli-missing"),
        (exited, "session"),
        (dagger.SessionError("No connection params"), "session"),
        (dagger.ClientConnectionError("All connection attempts failed"), "connect"),
        (dagger.TransportError("Connection to engine has been closed."), "connect"),
        (dagger.DaggerError("something new"), "other"),
    ]
    for error, kind in cases:
        found, detail = classify(error)
        assert found == kind, error
        message = failure_message(found, detail, target)
        assert message.startswith("dagger: ")
        assert "\n" not in message
    assert classify(exited)[1] == "it exited with 1: Error: failed to connect to engine"
    assert classify(missing)[1] == "No such file or directory"
    assert classify(dagger.SessionError("No connection params"))[1] == (
        "it exited without printing its connection details"
    )


def test_importing_parapipe_does_not_import_the_dagger_sdk() -> None:
    # `import dagger` costs about 0.9 s; only a run on the Dagger engine may pay it.
    code = (
        "import sys, parapipe.cli, parapipe.run.pipeline_run, parapipe.engine.registry\n"
        "print('dagger' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.docker
def test_auto_passes_over_a_dagger_that_fails_says_why_and_never_imports_the_sdk(
    project: Path,
) -> None:
    cli = fake_cli(project, "dagger", 'echo "Error: engine down" >&2\nexit 1\n')
    code = (
        "import sys, anyio\n"
        "from parapipe.engine.registry import choose_engine\n"
        "engine, reason = anyio.run(choose_engine, 'auto')\n"
        "print(engine.name); print(reason); print('dagger' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in DAGGER_VARIABLES}
    env["PATH"] = f"{project}{os.pathsep}{env['PATH']}"  # the fake is the `dagger` on PATH
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=FAILS_WITHIN,
        check=True,
        env=env,
    )
    name, reason, imported = result.stdout.splitlines()
    assert name == "docker"
    assert reason.startswith(
        f"the first engine that answered; dagger: `{cli} session` failed: it exited with 1:"
        " Error: engine down"
    )
    assert imported == "False"  # the probe ran in a child process


@pytest.fixture
def open_session() -> Iterator[str]:
    """A local endpoint answering as the session of `dagger run` does to a probe: the schema
    and `version`. It runs nothing: it only shows which engine `auto` takes."""
    schema = graphql.build_schema("type Query { version: String! }")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            result = graphql.graphql_sync(schema, body["query"], root_value={"version": "v0.21.11"})
            answer = json.dumps({"data": result.data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield str(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join()


def test_auto_takes_an_open_dagger_session_first(
    open_session: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGGER_SESSION_PORT", open_session)
    monkeypatch.setenv("DAGGER_SESSION_TOKEN", "token")
    engine, reason = anyio.run(choose_engine, "auto")
    assert engine.name == "dagger"
    assert reason == (
        "a Dagger session is open (DAGGER_SESSION_PORT is set, as under `dagger run`);"
        " engine v0.21.11 answered"
    )


def test_the_engine_holds_one_connection_for_the_run(
    open_session: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from parapipe.engine.dagger.engine import DAGGER_LOG, DaggerEngine

    monkeypatch.setenv("DAGGER_SESSION_PORT", open_session)
    monkeypatch.setenv("DAGGER_SESSION_TOKEN", "token")
    engine = DaggerEngine(checked=True)
    assert engine.target.session

    async def run() -> Path:
        async with engine.session(tmp_path):
            client, scratch = engine._opened()
            assert scratch.is_dir()
            assert await client.version() == "v0.21.11"  # through the connection it opened
        return scratch

    scratch = anyio.run(run)
    assert not scratch.exists()  # build contexts go when the session closes
    assert (tmp_path / DAGGER_LOG).exists()
    with pytest.raises(RuntimeError, match="outside its session"):
        engine._opened()


def test_the_runner_host_reaches_the_cli_the_sdk_starts(project: Path) -> None:
    """`_EXPERIMENTAL_DAGGER_RUNNER_HOST` is the Dagger CLI's own setting: parapipe passes it on
    untouched (no Dagger engine can run here, so the CLI says what it was given and fails)."""
    seen = project / "runner-host.txt"
    body = (
        f'printf %s "$_EXPERIMENTAL_DAGGER_RUNNER_HOST" > {seen}\necho "Error: down" >&2\nexit 1\n'
    )
    cli = fake_cli(project, "dagger", body)
    runner = "tcp://10.9.9.9:1234"
    line = one_line_exit_3(
        parapipe(
            project,
            "--engine",
            "dagger",
            _EXPERIMENTAL_DAGGER_CLI_BIN=str(cli),
            _EXPERIMENTAL_DAGGER_RUNNER_HOST=runner,
        )
    )
    assert "Error: down" in line
    assert seen.read_text() == runner


def test_the_dagger_engine_names_its_runner_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from parapipe.engine.dagger.engine import DaggerEngine

    target = DaggerTarget(session=False, cli="/usr/bin/true", why="a test")
    monkeypatch.delenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", raising=False)
    assert DaggerEngine(target, checked=True).address() is None
    monkeypatch.setenv("_EXPERIMENTAL_DAGGER_RUNNER_HOST", "kube-pod://dagger-engine-0")
    assert DaggerEngine(target, checked=True).address() == "kube-pod://dagger-engine-0"
