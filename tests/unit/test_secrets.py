"""Secrets without containers: where values come from, how they are masked, how they reach the
engines (stdin, never argv or env; Dagger's chain), and what the runner does with them on the fake engine.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagger
import pytest

from parapipe.engine.api import StepRun
from parapipe.engine.dagger.engine import step_container
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import loader
from parapipe.engine.fake import FakeEngine, FakeStep
from parapipe.errors import EngineError, ExitCode, SpecError, UsageError
from parapipe.model import ImageResult, Location, RunResult, Status, Step, StepResult
from parapipe.reporters.base import Reporter
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.run.secrets import (
    MASK,
    Redactor,
    Secrets,
    fingerprint,
    parse_secret_flags,
    resolve_secrets,
)
from parapipe.spec.load import load_pipeline
from tests.helpers.steps import make_step_run

TOKEN = "tok-5f3a9c-secret"
PEM = "-----BEGIN TEST KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEF\r\n-----END TEST KEY-----"


def make_step(name: str = "publish", secrets: tuple[str, ...] = ("TOKEN",)) -> Step:
    return Step(
        name=name,
        run=("true",),
        needs=(),
        env={},
        location=Location(file="ci.yaml", line=7, column=3),
        secrets=secrets,
    )


# -- where values come from ---------------------------------------------------------------


def test_a_flag_wins_over_the_environment_and_the_environment_fills_in() -> None:
    steps = [make_step(secrets=("TOKEN", "OTHER"))]
    secrets = resolve_secrets(steps, {"TOKEN": "from-flag"}, {"TOKEN": "from-env", "OTHER": "o1"})
    assert secrets.values == {"TOKEN": "from-flag", "OTHER": "o1"}


def test_only_the_secrets_of_the_given_steps_are_resolved() -> None:
    secrets = resolve_secrets([make_step()], {}, {"TOKEN": "t0k", "UNRELATED": "u"})
    assert secrets.values == {"TOKEN": "t0k"}


def test_a_missing_secret_is_a_located_error_naming_the_step_the_secret_and_the_fix() -> None:
    with pytest.raises(SpecError) as caught:
        resolve_secrets([make_step("lint", ()), make_step()], {}, {})
    assert str(caught.value) == (
        "ci.yaml:7:3: step 'publish' needs secret 'TOKEN', which is not set: set TOKEN in the"
        " environment, or pass --secret TOKEN=VALUE or --secret-file TOKEN=PATH"
    )
    assert caught.value.exit_code == ExitCode.USAGE


def test_an_empty_secret_counts_as_missing_and_says_so() -> None:
    # As GitHub Actions hands a fork's pull request an empty string for every secret.
    with pytest.raises(SpecError, match="'TOKEN', which is empty"):
        resolve_secrets([make_step()], {}, {"TOKEN": ""})


def test_several_missing_secrets_are_named_in_one_line() -> None:
    with pytest.raises(SpecError) as caught:
        resolve_secrets([make_step(secrets=("A", "B", "C"))], {}, {"B": "", "C": "ccc"})
    message = str(caught.value)
    assert "\n" not in message
    assert "secrets 'A' (not set), 'B' (empty):" in message


def test_flags_give_values_and_files_give_their_text_without_one_trailing_newline(
    tmp_path: Path,
) -> None:
    (tmp_path / "pem").write_bytes(PEM.encode() + b"\r\n")
    (tmp_path / "two").write_text("value\n\n")
    values = parse_secret_flags(
        ["A=x=y=z", "B= spaced "], [f"PEM={tmp_path / 'pem'}", f"TWO={tmp_path / 'two'}"]
    )
    assert values == {"A": "x=y=z", "B": " spaced ", "PEM": PEM, "TWO": "value\n"}


@pytest.mark.parametrize(
    ("pairs", "files", "message"),
    [
        (["hunter2hunter2"], [], "--secret takes NAME=VALUE; the argument given has no '='"),
        (["my-token=abc"], [], "'my-token' is not a valid secret name"),
        (["=abc"], [], "'' is not a valid secret name"),
        (["A=one", "A=two"], [], "--secret: secret 'A' is given more than once"),
        (["A=one"], ["A=/dev/null"], "secret 'A' is given more than once"),
        (["A="], [], "--secret: secret 'A' is empty"),
        (["A=x\0y"], [], "secret 'A' holds a NUL character"),
        ([], ["A"], "--secret-file takes NAME=PATH; the argument given has no '='"),
        ([], ["A=/no/such/file"], "--secret-file A=/no/such/file: cannot read it: No such file"),
        ([], ["A=/dev/null"], "--secret-file: secret 'A' is empty"),
    ],
)
def test_a_malformed_flag_is_a_usage_error_that_never_shows_a_value(
    pairs: list[str], files: list[str], message: str
) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")) as caught:
        parse_secret_flags(pairs, files)
    for value in ("hunter2", "abc", "one", "two"):
        assert value not in str(caught.value)


def test_a_secret_file_that_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"\xff\xfe binary")
    with pytest.raises(UsageError, match="not UTF-8 text"):
        parse_secret_flags([], [f"KEY={tmp_path / 'key'}"])


# -- masking ------------------------------------------------------------------------------


def test_every_occurrence_of_every_value_is_masked() -> None:
    redact = Redactor([TOKEN, "p4ss.word*"])
    text = f"{TOKEN}:{TOKEN} and p4ss.word* but not p4ssXword"
    assert redact(text) == "***:*** and *** but not p4ssXword"


def test_a_multi_line_value_is_masked_whole_and_line_by_line() -> None:
    redact = Redactor([PEM])
    assert redact(f"key: {PEM}!") == "key: ***!"
    # Output reaches the runner one line at a time, each without its line break.
    lines = [redact(line) for line in f"begin\n{PEM}\nend".replace("\r", "").split("\n")]
    assert lines == ["begin", MASK, MASK, MASK, "end"]


def test_the_longest_value_is_masked_first_so_nothing_of_it_is_left() -> None:
    redact = Redactor(["abc", "abcdef"])
    assert redact("abcdefabc") == "******"


def test_values_shorter_than_three_characters_are_not_masked() -> None:
    redact = Redactor(["ab", "x\nyz\nlong-line"])
    assert redact("ab x yz long-line") == "ab x yz ***"


def test_with_no_values_text_passes_unchanged() -> None:
    redact = Redactor([])
    assert not redact
    assert redact("a *** b") == "a *** b"


# -- fingerprints -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [TOKEN, PEM, "hunter2", "1234", "a" * 200, "日本語の秘密"])
def test_a_fingerprint_never_is_nor_holds_its_value(value: str) -> None:
    digest = fingerprint("TOKEN", value)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert value not in digest
    assert digest != value


def test_a_fingerprint_changes_with_the_value_and_with_the_name() -> None:
    assert fingerprint("TOKEN", "one") == fingerprint("TOKEN", "one")
    assert fingerprint("TOKEN", "one") != fingerprint("TOKEN", "two")
    assert fingerprint("TOKEN", "one") != fingerprint("OTHER", "one")


def test_secrets_hand_a_step_its_values_and_fingerprints_and_never_show_them_in_repr() -> None:
    secrets = Secrets({"TOKEN": TOKEN, "OTHER": "other-value"})
    step = make_step()
    assert secrets.for_step(step) == {"TOKEN": TOKEN}
    assert secrets.fingerprints(step) == {"TOKEN": fingerprint("TOKEN", TOKEN)}
    assert TOKEN not in repr(secrets)


# -- Docker and Podman: values on stdin, never in argv or config---------------------------------


def make_run(secrets: dict[str, str], **env: str) -> StepRun:
    return make_step_run(step="publish", commands=("./publish",), env=env, secrets=secrets)


NONCE = "0123456789abcdef0123456789abcdef"


def test_a_secret_is_neither_in_docker_runs_argv_nor_in_its_environment() -> None:
    # Not in the argv (`ps`), and not in the CLI's environment either: `-e NAME` would put the
    # value in the container's config (`docker inspect`, the daemon's config.v2.json).
    run = make_run({"TOKEN": TOKEN, "PEM": PEM, "DOCKER_PASSWORD": TOKEN}, PLAIN="shown")
    with pytest.raises(ValueError, match="nonce"):
        argvs.run_argv("docker", run, "c1")
    for create in (False, True):
        argv = argvs.run_argv("docker", run, "c1", create=create, nonce=NONCE)
        assert not any(TOKEN in arg or "MIIEvQ" in arg for arg in argv)
        assert not {"TOKEN", "PEM", "DOCKER_PASSWORD", "--env-file"} & set(argv)
        assert argv[argv.index("PLAIN") - 1 : argv.index("PLAIN") + 1] == ["-e", "PLAIN"]
        assert argv[2] == "-i"  # the secrets come on stdin
        assert argv[argv.index(run.image_id) + 1 :] == loader.secrets_argv(run, NONCE)
    assert argvs.step_cli_env(run.env) == {"PLAIN": "shown"}
    assert StepRun.__dataclass_fields__["secrets"].repr is False
    assert TOKEN not in repr(run)


def _loaded(run: StepRun, script: bytes) -> subprocess.CompletedProcess[str]:
    """What a step's own container does with `script` on its stdin, in the host's `sh`."""
    argv = argvs.run_argv("docker", run, "c1", nonce=NONCE)
    return subprocess.run(
        argv[argv.index(run.image_id) + 1 :],
        input=script.decode(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_the_secrets_loader_exports_every_value_exactly_then_runs_the_step() -> None:
    secrets = {"TOKEN": TOKEN, "PEM": PEM, "DOCKER_PASSWORD": "it's $HOME `id`"}
    run = replace(make_run(secrets), commands=('printf "%s|" "$TOKEN" "$PEM" "$DOCKER_PASSWORD"',))
    done = _loaded(run, loader.secrets_script(run, NONCE))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1] == f"{TOKEN}|{PEM.splitlines()[0]}"
    assert done.stdout.endswith(f"{PEM.splitlines()[-1]}|it's $HOME `id`|")


def test_a_step_whose_secrets_never_arrived_fails_without_running() -> None:
    run = replace(make_run({"TOKEN": TOKEN}), commands=("echo ran",))
    script = loader.secrets_script(run, NONCE)
    done = _loaded(run, script.removesuffix(f"{NONCE}\n".encode()))
    assert done.returncode == 125
    assert "ran" not in done.stdout
    assert "secrets did not reach its container" in done.stderr


def test_a_secret_no_shell_can_export_fails_before_anything_starts() -> None:
    with pytest.raises(EngineError, match="secret 'UID' of step 'publish' cannot be handed"):
        loader.secrets_script(make_run({"UID": "1000"}), NONCE)


# -- Dagger: a secret variable, never an env variable -------------------------------------


def test_dagger_hands_a_secret_over_as_a_secret_variable() -> None:
    run = make_run({"TOKEN": TOKEN}, PLAIN="shown")
    chain = [(f.name, dict(f.args)) for f in step_container(dagger.Client(), run)._ctx.selections]
    names = [name for name, _ in chain]
    assert names.index("withSecretVariable") < names.index("withExec")
    env = [args for name, args in chain if name == "withEnvVariable"]
    assert env == [{"name": "PLAIN", "value": "shown"}]
    (secret_args,) = [args for name, args in chain if name == "withSecretVariable"]
    assert secret_args["name"] == "TOKEN"
    secret_chain = [(f.name, dict(f.args)) for f in secret_args["secret"]._ctx.selections]
    assert secret_chain == [("setSecret", {"name": "TOKEN", "plaintext": TOKEN})]


# -- the runner, on the fake engine -------------------------------------------------------

SPEC = """\
name: fake
image: {from: busybox:latest}
steps:
  lint: {run: lint}
  publish:
    run: publish
    env: {TOKEN: not-the-secret, KEEP: kept}
    secrets: [TOKEN]
"""


class Collect(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.finished: list[StepResult] = []

    def step_output(self, name: str, line: str) -> None:
        self.lines.append(line)

    def image_output(self, line: str) -> None:
        self.lines.append(line)

    def step_finished(self, result: StepResult) -> None:
        self.finished.append(result)

    def image_finished(self, result: ImageResult) -> None:
        if result.reason:
            self.lines.append(result.reason)


async def run(
    tmp_path: Path, engine: FakeEngine, reporter: Reporter | None = None, **options: Any
) -> RunResult:
    path = tmp_path / "ci.yaml"
    path.write_text(SPEC)
    return await run_pipeline(
        load_pipeline(path), RunOptions(**options), [reporter or Reporter()], engine=engine
    )


@pytest.mark.anyio
async def test_a_step_gets_its_secret_apart_from_its_env_and_output_shows_it_masked(
    tmp_path: Path,
) -> None:
    engine = FakeEngine({"publish": FakeStep(output=(f"uploading with {TOKEN}",), exit_code=1)})
    reporter = Collect()
    # keep_going: whichever step the scheduler starts first, publish's failure must not stop lint.
    result = await run(tmp_path, engine, reporter, secrets={"TOKEN": TOKEN}, keep_going=True)
    (step_run,) = [r for r in engine.runs if r.step == "publish"]
    assert step_run.secrets == {"TOKEN": TOKEN}
    assert "TOKEN" not in step_run.env  # the secret replaces the plain variable
    assert step_run.env["KEEP"] == "kept"
    assert next(r for r in engine.runs if r.step == "lint").secrets == {}
    assert reporter.lines == [f"uploading with {MASK}"]
    log = result.steps["publish"].log_path
    assert log is not None
    assert f"uploading with {MASK}" in log.read_text()
    assert TOKEN not in "".join(p.read_text() for p in result.run_dir.iterdir())


@pytest.mark.anyio
async def test_an_engine_error_that_quotes_a_secret_is_masked_in_the_reason_and_log(
    tmp_path: Path,
) -> None:
    engine = FakeEngine({"publish": FakeStep(engine_error=f"daemon said: bad {TOKEN}")})
    reporter = Collect()
    result = await run(tmp_path, engine, reporter, secrets={"TOKEN": TOKEN})
    publish = result.steps["publish"]
    assert publish.status is Status.ERROR
    assert publish.reason == f"daemon said: bad {MASK}"
    assert all(TOKEN not in a.reason for a in publish.attempts)
    assert TOKEN not in str(reporter.finished)
    assert publish.log_path is not None
    assert TOKEN not in publish.log_path.read_text()


@pytest.mark.anyio
async def test_a_missing_secret_stops_the_run_before_the_engine_or_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKEN", raising=False)
    engine = FakeEngine()
    with pytest.raises(SpecError, match=r"/ci.yaml:5:3: step 'publish' needs secret 'TOKEN'"):
        await run(tmp_path, engine)
    assert engine.builds == 0
    assert engine.runs == []
    assert not (tmp_path / ".parapipe").exists()


@pytest.mark.anyio
async def test_a_step_left_out_of_the_run_needs_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKEN", raising=False)
    result = await run(tmp_path, FakeEngine(), steps=("lint",))
    assert result.exit_code == ExitCode.OK


@pytest.mark.anyio
async def test_the_host_environment_supplies_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "from-the-host")
    engine = FakeEngine()
    await run(tmp_path, engine, steps=("publish",))
    assert engine.runs[0].secrets == {"TOKEN": "from-the-host"}
    assert os.environ["TOKEN"] == "from-the-host"
