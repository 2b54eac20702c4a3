"""`run -i` and `parapipe shell` with the in-memory engine and the pure argv: which steps are
offered, in what order, what each shell gets, and that kept images go however the flow ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from parapipe.cli.parser import build_parser
from parapipe.cli.requests import RunRequest, ShellRequest, request_from
from parapipe.engine.api import ShellRun, kept_image_tag
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import services
from parapipe.engine.fake import FakeEngine, FakeStep
from parapipe.errors import ExitCode, ServiceFailed, UsageError
from parapipe.model import Pipeline, RunResult
from parapipe.reporters.base import Reporter
from parapipe.run.debug import failed_command, offer_shells
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.spec.load import load_pipeline

SPEC = """\
name: dbg
image: {from: busybox:latest}
steps:
  a: {run: echo a, env: {X: "1"}, secrets: [TOKEN], caches: {pip: /root/.cache/pip}}
  b: {run: echo b}
  c: {run: echo c}
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    spec = tmp_path / "ci.yaml"
    spec.write_text(SPEC)
    return load_pipeline(spec)


def settle(
    pipeline: Pipeline,
    engine: FakeEngine,
    *,
    keep_failed: bool = True,
    secrets: dict[str, str] | None = None,
) -> RunResult:
    given = secrets or {"TOKEN": "t0k"}
    options = RunOptions(keep_going=True, keep_failed=keep_failed, secrets=given)

    async def go() -> RunResult:
        return await run_pipeline(pipeline, options, [Reporter()], engine=engine)

    return anyio.run(go)


def answers(*given: str) -> Iterator[str]:
    yield from given
    raise AssertionError("asked once more than expected")


def failing_engine() -> FakeEngine:
    return FakeEngine({"a": FakeStep(exit_code=3), "c": FakeStep(exit_code=4)})


def offer(
    engine: FakeEngine, pipeline: Pipeline, result: RunResult, *replies: str, keep: bool = False
) -> tuple[int, list[str]]:
    said: list[str] = []
    replies_left = answers(*replies)
    code = offer_shells(
        engine,
        pipeline,
        result,
        secrets=lambda step: {"TOKEN": "t0k"} if "TOKEN" in step.secrets else {},
        keep_images=keep,
        ask=lambda prompt: said.append(prompt) or next(replies_left),
        say=said.append,
    )
    return code, said


def test_each_failed_step_is_offered_in_turn_and_the_runs_exit_code_is_kept(
    pipeline: Pipeline,
) -> None:
    engine = failing_engine()
    engine.shell_exit_code = 0
    result = settle(pipeline, engine)
    assert all(run.keep_failed for run in engine.runs)
    code, said = offer(engine, pipeline, result, "", "y")
    assert code == ExitCode.STEP_FAILED
    assert [run.step for run in engine.shells] == ["a", "c"]
    assert any("[1/2] step 'a' failed with exit 3" in line for line in said)
    assert any("[2/2] step 'c' failed with exit 4" in line for line in said)
    shell_a = engine.shells[0]
    assert shell_a.env["X"] == "1"
    assert shell_a.secrets == {"TOKEN": "t0k"}
    assert [cache.path for cache in shell_a.caches] == ["/root/.cache/pip"]
    assert not any(tag.startswith("parapipe-failed") for tag in engine.images)


def test_skip_and_quit(pipeline: Pipeline) -> None:
    engine = failing_engine()
    result = settle(pipeline, engine)
    code, said = offer(engine, pipeline, result, "s", "q")
    assert engine.shells == []
    assert code == ExitCode.STEP_FAILED
    engine = failing_engine()
    result = settle(pipeline, engine)
    _, said = offer(engine, pipeline, result, "q")
    assert not any("[2/2]" in line for line in said)
    assert not any(tag.startswith("parapipe-failed") for tag in engine.images)


def test_kept_images_go_even_when_the_flow_is_interrupted(pipeline: Pipeline) -> None:
    engine = failing_engine()
    result = settle(pipeline, engine)

    def interrupted(prompt: str) -> str:
        raise KeyboardInterrupt

    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        offer_shells(
            engine, pipeline, result, secrets=lambda step: {}, ask=interrupted, say=said.append
        )
    assert not any(tag.startswith("parapipe-failed") for tag in engine.images)
    assert said[-1] == "parapipe: removing the kept filesystem of 2 failed step(s)"


def test_keep_failed_says_which_images_stay(pipeline: Pipeline) -> None:
    engine = failing_engine()
    result = settle(pipeline, engine)
    _, said = offer(engine, pipeline, result, "q", keep=True)
    assert "parapipe: kept the filesystem of 'a' as image sha256:kept-a" in said
    assert engine.images[kept_image_tag(result.run_id, "a")] == "sha256:kept-a"


def test_without_i_nothing_is_kept(pipeline: Pipeline) -> None:
    engine = failing_engine()
    settle(pipeline, engine, keep_failed=False)
    assert not any(tag.startswith("parapipe-failed") for tag in engine.images)


def test_the_failed_command_is_the_last_one_before_the_exit(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("$ make\nok\n$ make test\n$ not-this\nparapipe: exit 2\n")
    assert failed_command(log) == "not-this"
    log.write_text("$ one\nparapipe: exit 1\nparapipe: attempt 1 failed; retrying\n$ one\n")
    assert failed_command(log) == "one"
    assert failed_command(None) == ""


def test_kept_image_tags_are_valid_and_distinct() -> None:
    assert kept_image_tag("20261203-1", "test") == "parapipe-failed:20261203-1-test"
    odd = kept_image_tag("r", "a b")
    assert odd != kept_image_tag("r", "a-b")
    assert " " not in odd


def test_the_shell_argv_keeps_secret_values_off_the_command_line() -> None:
    run = ShellRun(
        run_id="r1",
        step="a",
        image_id="sha256:abc",
        env={"X": "1", "PATH": "/bin"},
        workdir="/src",
        labels={},
        secrets={"TOKEN": "t0k"},
    )
    argv = argvs.shell_create_argv("docker", run, "parapipe-r1-a.shell")
    assert "t0k" not in " ".join(argv)
    # Not even `-e TOKEN`: that would put the value in the container's config.
    assert [word for word in argv if "TOKEN" in word] == []
    assert argv[argv.index("--tmpfs") + 1] == "/run/parapipe-secrets:mode=0700"
    assert argv[:4] == ["docker", "create", "-i", "--pull=never"]
    assert "--tty" in argv
    assert "PATH=/bin" in argv
    assert "X" in argv
    assert argvs.shell_cli_env(run) == {"X": "1"}
    with_shell = argvs.shell_create_argv(
        "docker", ShellRun(**{**run.__dict__, "shell": ("zsh", "-l")}), "n"
    )
    assert with_shell[-2:] == ["zsh", "-l"]
    on_network = argvs.shell_create_argv("docker", run, "n", "net1")
    assert on_network[on_network.index("--network") + 1] == "net1"
    assert "--network" not in argv


def test_a_shells_services_have_a_network_and_names_of_their_own() -> None:
    run = ShellRun(run_id="r1", step="a", image_id="i", env={}, workdir="/src", labels={})
    assert services.network_name(run.run_id, run.step, services.instance(run)) == (
        "parapipe-r1-a.shell.services"
    )
    assert services.service_container_name("r1", "a", services.instance(run), "db") == (
        "parapipe-r1-a.shell.svc-db"
    )
    assert services.step_labels(run) == {"io.parapipe.run": "r1", "io.parapipe.step": "a"}


def test_the_command_line() -> None:
    parser = build_parser()
    request = request_from(parser.parse_args(["shell", "test", "--shell", "bash -l"]))
    assert isinstance(request, ShellRequest)
    assert (request.step, request.shell) == ("test", ("bash", "-l"))
    run = request_from(parser.parse_args(["run", "-i", "--keep-failed"]))
    assert isinstance(run, RunRequest)
    assert run.interactive
    assert run.keep_failed
    with pytest.raises(UsageError, match="--shell"):
        request_from(parser.parse_args(["run", "-i", "--shell", "'"]))


def test_i_is_refused_with_the_github_output_and_on_dagger(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    from parapipe.cli import main
    from parapipe.engine.dagger.engine import DaggerEngine

    assert main(["run", "-i", "--output", "github", "-f", str(pipeline.spec_path)]) == 2
    assert (
        capsys.readouterr().err == "parapipe: -i/--interactive is never used with --output github\n"
    )
    refusal = DaggerEngine().shell_refusal()
    assert refusal is not None
    assert refusal.startswith("not supported on dagger")


SERVICE_SPEC = """\
name: dbg
image: {from: busybox:latest}
services:
  db: {run: [serve], env: {MODE: test}, secrets: [DB_PASSWORD], ready: {run: check}}
steps:
  a: {run: echo a, services: [db], secrets: [TOKEN]}
"""
SERVICE_SECRETS = {"TOKEN": "t0k", "DB_PASSWORD": "pw-secret"}


class ServiceSays(FakeEngine):
    """Each service of a shell writes a line with a secret in it to its log."""

    async def shell(self, run: ShellRun) -> int:
        for service in run.services:
            service.log("password pw-secret")
        return await super().shell(run)


class ServiceNeverReady(FakeEngine):
    async def shell(self, run: ShellRun) -> int:
        self.shells.append(run)
        raise ServiceFailed("service 'db' was not ready after 60s")


def shell_beside_db(
    tmp_path: Path, engine: FakeEngine, said: list[str]
) -> tuple[Pipeline, RunResult]:
    """`SERVICE_SPEC`'s step `a` fails on `engine`, and its shell is asked for."""
    spec = tmp_path / "ci.yaml"
    spec.write_text(SERVICE_SPEC)
    pipeline = load_pipeline(spec)
    result = settle(pipeline, engine, secrets=SERVICE_SECRETS)
    offer_shells(
        engine,
        pipeline,
        result,
        secrets=lambda step: {name: SERVICE_SECRETS[name] for name in step.secrets},
        ask=lambda prompt: "",
        say=said.append,
    )
    return pipeline, result


def test_the_shell_of_a_step_with_services_gets_fresh_ones(tmp_path: Path) -> None:
    engine = ServiceSays({"a": FakeStep(exit_code=3)})
    said: list[str] = []
    _, result = shell_beside_db(tmp_path, engine, said)
    banner_line = "its services start afresh (db): the data the step left in them is not there"
    assert any(banner_line in line for line in said)
    [shell] = engine.shells
    [db] = shell.services
    assert (db.name, db.commands, dict(db.env)) == ("db", ("serve",), {"MODE": "test"})
    assert db.secrets == {"DB_PASSWORD": "pw-secret"}
    assert result.image is not None
    assert db.image_id == result.image.image_id  # the pipeline image: the service names none
    assert shell.secrets == {"TOKEN": "t0k"}
    # Its log, in the run's folder beside the run's own service logs, masks every secret.
    log = result.run_dir / "a.shell.services" / "db.log"
    assert log.read_text() == "password ***\n"


def test_a_service_never_ready_in_a_shell_is_one_line_and_the_kept_images_go(
    tmp_path: Path,
) -> None:
    engine = ServiceNeverReady({"a": FakeStep(exit_code=3)})
    with pytest.raises(ServiceFailed) as failed:
        shell_beside_db(tmp_path, engine, [])
    [run_dir] = (tmp_path / ".parapipe" / "runs").iterdir()
    logs = run_dir / "a.shell.services"
    assert str(failed.value) == (
        f"service 'db' was not ready after 60s: no shell opened (the services' logs: {logs})"
    )
    assert failed.value.exit_code == ExitCode.STEP_FAILED
    assert not any(tag.startswith("parapipe-failed") for tag in engine.images)
