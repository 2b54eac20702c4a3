"""Services: the spec (and its located errors), the Docker/Podman command lines, the step cache
key, and the runner on the fake engine. The real containers are in tests/integration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from parapipe.engine.api import ServiceRun, StepRun
from parapipe.engine.docker import loader as docker_loader
from parapipe.engine.docker import services as docker_services
from parapipe.engine.fake import FakeEngine, FakeStep
from parapipe.errors import EngineError, ExitCode, SpecError
from parapipe.model import ImagePlan, Readiness, RunResult, Status
from parapipe.reporters.base import Reporter
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.run.state.step_cache import step_key
from parapipe.spec.load import load_pipeline
from tests.helpers.steps import make_step_run

GOOD = """\
name: svc
image: {from: busybox:latest}
services:
  db:
    image: parapipe-seed/postgres:bookworm
    run: [postgres -D /data]
    env: {POSTGRES_PASSWORD: test}
    ready: {run: pg_isready, timeout: 30s, interval: 250ms}
  cache: {run: sleep 1000}
  plain:
steps:
  test:
    run: echo test
    services: [db, cache]
  other: {run: echo other}
"""


def test_services_are_read_with_their_defaults(tmp_path: Path) -> None:
    (tmp_path / "ci.yaml").write_text(GOOD)
    pipeline = load_pipeline(tmp_path / "ci.yaml")
    db, cache, plain = pipeline.services.values()
    assert db.image == "parapipe-seed/postgres:bookworm"
    assert db.run == ("postgres -D /data",)
    assert db.env == {"POSTGRES_PASSWORD": "test"}
    assert db.ready == Readiness(run="pg_isready", timeout=30.0, interval=0.25)
    assert (db.location.line, db.location.column) == (4, 3)
    assert cache.image is None  # the pipeline image
    assert cache.ready is None
    assert plain.run == ()  # the image's own command
    assert pipeline.steps["test"].services == ("db", "cache")
    assert pipeline.steps["other"].services == ()


def test_ready_defaults_to_60s_every_500ms(tmp_path: Path) -> None:
    (tmp_path / "ci.yaml").write_text(GOOD.replace(", timeout: 30s, interval: 250ms", ""))
    ready = load_pipeline(tmp_path / "ci.yaml").services["db"].ready
    assert ready == Readiness(run="pg_isready", timeout=60.0, interval=0.5)


BAD = {
    "unknown service": (
        GOOD.replace("services: [db, cache]", "services: [dbb]"),
        "14:16: step 'test' names service 'dbb', which is not a service (did you mean 'db'?)",
    ),
    "no services at all": (
        "image: {from: busybox}\nsteps:\n  a: {run: x, services: [db]}\n",
        "3:26: step 'a' names service 'db', but the spec has no top-level 'services'",
    ),
    "not a hostname": (
        GOOD.replace("  cache: {run", "  my_cache: {run"),
        "9:3: invalid service name 'my_cache': it is the service's hostname, so use letters,"
        " digits and '-' (not first or last), at most 63 characters",
    ),
    "ends with a dash": (
        GOOD.replace("  cache: {run", "  cache-: {run"),
        "9:3: invalid service name 'cache-': it is the service's hostname",
    ),
    "too long for a hostname": (
        GOOD.replace("  cache: {run", "  " + "c" * 64 + ": {run"),
        "9:3: invalid service name '" + "c" * 64 + "'",
    ),
    "ready without run": (
        GOOD.replace("ready: {run: pg_isready, timeout", "ready: {timeout"),
        "8:5: 'ready' of service 'db' has no 'run': the command that exits 0 once the service"
        " is ready",
    ),
    "a service naming services": (
        GOOD.replace("  cache: {run: sleep 1000}", "  cache: {services: [db]}"),
        "9:11: service 'cache' cannot name services: services run beside steps, not beside"
        " other services",
    ),
    "unknown key in a service": (
        GOOD.replace("  cache: {run", "  cache: {rnu"),
        "9:11: unknown key 'rnu' in service 'cache' (did you mean 'run'?)",
    ),
    "a bad ready interval": (
        GOOD.replace("interval: 250ms", "interval: 5"),
        "8:54: 'interval' of 'ready' of service 'db' needs a unit",
    ),
    "listed twice": (
        GOOD.replace("services: [db, cache]", "services: [db, db]"),
        "14:20: 'db' is listed twice in 'services' of step 'test'",
    ),
    "case-only clash": (
        GOOD.replace("  plain:", "  DB:"),
        "10:3: service 'DB' differs from service 'db' only in case",
    ),
}


@pytest.mark.parametrize(("text", "expected"), BAD.values(), ids=BAD.keys())
def test_bad_services_are_one_located_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("ci.yaml").write_text(text)
    with pytest.raises(SpecError) as info:
        load_pipeline(Path("ci.yaml"))
    assert info.value.exit_code is ExitCode.USAGE
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"ci.yaml:{expected}"), message


def test_the_cli_exits_2_on_an_unknown_service(tmp_path: Path) -> None:
    (tmp_path / "ci.yaml").write_text(GOOD.replace("services: [db, cache]", "services: [dbb]"))
    done = subprocess.run(
        [sys.executable, "-m", "parapipe", "validate", "-f", "ci.yaml"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ci.yaml:14:16: step 'test' names service 'dbb', which is not a service"
        " (did you mean 'db'?)"
    ]


# -- command lines ------------------------------------------------------------------------------


def service(**fields: object) -> ServiceRun:
    defaults: dict[str, object] = {
        "name": "db",
        "image_id": "sha256:pg",
        "commands": (),
        "env": {"POSTGRES_PASSWORD": "test", "PATH": "/x"},
    }
    return ServiceRun(**{**defaults, **fields})  # type: ignore[arg-type]


def step_run() -> StepRun:
    return make_step_run(run_id="r1", step="test", labels={"io.parapipe.pipeline": "ci"})


def test_a_service_runs_on_the_steps_network_as_its_hostname() -> None:
    argv = docker_services.service_run_argv("docker", step_run(), service(), "c1", "net1")
    assert argv[:2] == ["docker", "run"]
    assert argv[argv.index("--network") + 1] == "net1"
    assert argv[argv.index("--network-alias") + 1] == "db"
    assert "io.parapipe.run=r1" in argv
    assert "io.parapipe.step=test" in argv
    assert "io.parapipe.service=db" in argv
    assert "--pull=never" in argv
    # Values reach the CLI through its environment, not its command line, except for names the
    # CLI reads itself.
    assert "POSTGRES_PASSWORD" in argv
    assert "PATH=/x" in argv
    assert argv[-1] == "sha256:pg"  # the image's own command
    assert docker_services.service_cli_env(service()) == {"POSTGRES_PASSWORD": "test"}


def test_a_services_run_replaces_the_images_command() -> None:
    argv = docker_services.service_run_argv(
        "podman", step_run(), service(commands=("a", "b")), "c1", "net1"
    )
    assert argv[-5:] == ["--entrypoint", "sh", "sha256:pg", "-ec", "a\nb"]


def test_a_services_secrets_come_on_stdin_never_in_its_command_line_or_config() -> None:
    run = service(commands=("a",), secrets={"TOKEN": "s3cret-value", "POSTGRES_PASSWORD": "pw"})
    argv = docker_services.service_run_argv("docker", step_run(), run, "c1", "net1", nonce="n0nce")
    assert "s3cret-value" not in " ".join(argv)
    assert "-i" in argv
    # No `-e` for a secret.
    assert "TOKEN" not in argv
    assert "POSTGRES_PASSWORD" not in argv
    assert docker_services.service_cli_env(run) == {}
    image = argv.index("sha256:pg")
    assert argv[image - 2 : image] == ["--entrypoint", "sh"]
    assert argv[image + 1 : image + 2] == ["-c"]
    assert argv[image + 3 :] == ["parapipe", "n0nce", "sh", "-ec", "a"]


def test_a_service_with_secrets_and_the_images_command_execs_its_entrypoint_and_cmd() -> None:
    run = service(secrets={"TOKEN": "s3cret-value"})
    argv = docker_services.service_run_argv(
        "podman", step_run(), run, "c1", "net1", nonce="n0nce", image_command=["pg", "-D", "x"]
    )
    assert argv[-5:] == ["parapipe", "n0nce", "pg", "-D", "x"]
    with pytest.raises(ValueError, match="needs a nonce"):
        docker_services.service_run_argv("docker", step_run(), run, "c1", "net1")


def test_a_services_secrets_script_exports_them_and_refuses_a_read_only_name() -> None:
    script = docker_loader.service_secrets_script("db", {"TOKEN": "it's"}, "n0nce")
    assert script == b"export TOKEN='it'\"'\"'s'\nn0nce\n"
    with pytest.raises(EngineError, match="secret 'UID' of service 'db'"):
        docker_loader.service_secrets_script("db", {"UID": "1"}, "n0nce")


def test_names_of_services_networks_and_containers_never_meet_a_steps() -> None:
    assert docker_services.network_name("r1", "test", 2) == "parapipe-r1-test.2.services"
    name = docker_services.service_container_name("r1", "test", 1, "db")
    assert name == "parapipe-r1-test.1.svc-db"
    assert docker_services.list_run_networks_argv("docker", "r1")[-1] == "label=io.parapipe.run=r1"


# -- the step cache key ---------------------------------------------------------------------------


def test_the_services_are_part_of_the_step_cache_key(tmp_path: Path) -> None:
    (tmp_path / "ci.yaml").write_text(GOOD)
    pipeline = load_pipeline(tmp_path / "ci.yaml")
    step = pipeline.steps["test"]
    plan = ImagePlan.__new__(ImagePlan)
    object.__setattr__(plan, "tag", "parapipe/svc:1")

    def key(services: list[dict[str, object]]) -> str:
        return step_key(
            step=step, plan=plan, workdir="/src", secret_fingerprints={}, received={},
            services=services,
        )  # fmt: skip

    base = [{"service": "db", "image": "sha256:a", "run": [], "env": {}}]
    assert key(base) == key([dict(base[0])])
    assert key(base) != key([{**base[0], "image": "sha256:b"}])
    assert key(base) != key([{**base[0], "env": {"X": "1"}}])
    assert key(base) != key([{**base[0], "run": ["postgres"]}])
    # A step without services keeps the key it had before services existed.
    assert key([]) == step_key(
        step=step, plan=plan, workdir="/src", secret_fingerprints={}, received={}
    )


# -- the runner on the fake engine -----------------------------------------------------------


async def run(path: Path, engine: FakeEngine, **options: object) -> RunResult:
    pipeline = load_pipeline(path)
    return await run_pipeline(pipeline, RunOptions(**options), [Reporter()], engine=engine)  # type: ignore[arg-type]


SECRET_SPEC = """\
name: svc
image: {from: busybox:latest}
services:
  db:
    image: pg
    env: {MODE: fast}
    secrets: [PP_DB_TOKEN]
  helper: {run: sleep 100}
steps:
  test: {run: echo test, services: [db, helper]}
"""


@pytest.mark.anyio
async def test_the_engine_gets_each_service_with_its_image_env_and_secrets(
    tmp_path: Path,
) -> None:
    (tmp_path / "ci.yaml").write_text(SECRET_SPEC)
    engine = FakeEngine()
    engine.service_images["pg"] = "sha256:pg"
    result = await run(tmp_path / "ci.yaml", engine, secrets={"PP_DB_TOKEN": "tok-en-value"})
    assert result.exit_code == ExitCode.OK
    (step_run_,) = engine.runs
    db, helper = step_run_.services
    assert (db.name, db.image_id, dict(db.env), dict(db.secrets)) == (
        "db", "sha256:pg", {"MODE": "fast"}, {"PP_DB_TOKEN": "tok-en-value"}
    )  # fmt: skip
    assert helper.image_id == step_run_.image_id  # the pipeline image
    assert helper.commands == ("sleep 100",)
    log = tmp_path / ".parapipe" / "runs" / result.run_id / "test.services" / "db.log"
    assert log.read_text() == "fake service db of test is up\n"


@pytest.mark.anyio
async def test_a_service_failure_fails_the_step_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "ci.yaml").write_text(SECRET_SPEC)
    engine = FakeEngine({"test": FakeStep(service_failure="service 'db' was not ready after 60s")})
    engine.service_images["pg"] = "sha256:pg"
    result = await run(tmp_path / "ci.yaml", engine, secrets={"PP_DB_TOKEN": "tok-en-value"})
    assert result.exit_code == ExitCode.STEP_FAILED
    step = result.steps["test"]
    assert step.status is Status.FAILED
    assert step.reason == "service 'db' was not ready after 60s"


@pytest.mark.anyio
async def test_a_missing_service_image_is_an_error_of_the_step(tmp_path: Path) -> None:
    (tmp_path / "ci.yaml").write_text(SECRET_SPEC)
    engine = FakeEngine()
    result = await run(tmp_path / "ci.yaml", engine, secrets={"PP_DB_TOKEN": "tok-en-value"})
    step = result.steps["test"]
    assert step.status is Status.ERROR
    assert step.reason.startswith("service 'db': no image 'pg' in fake")
    assert engine.runs == []


def test_a_missing_service_secret_stops_the_run_at_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parapipe.run.pipeline_run import select_run

    monkeypatch.delenv("PP_DB_TOKEN", raising=False)
    (tmp_path / "ci.yaml").write_text(SECRET_SPEC)
    pipeline = load_pipeline(tmp_path / "ci.yaml")
    with pytest.raises(SpecError) as info:
        select_run(pipeline, RunOptions())
    assert "service 'db' needs secret 'PP_DB_TOKEN', which is not set" in str(info.value)
    assert info.value.location is not None
    assert info.value.location.line == 4


# -- Dagger: the chains, without an engine (none can run here) -------------------------------


def test_on_dagger_a_service_is_bound_to_the_step_by_its_name() -> None:
    import dagger

    from parapipe.engine.dagger.engine import step_container
    from parapipe.engine.dagger.services import service_container

    client = dagger.Client()
    run = make_step_run(run_id="r1", step="test", image_id="pipeline-id", commands=("psql",))
    db = service(image_id="pg-id", commands=("postgres -D /data",), secrets={"TOKEN": "t0k-en"})
    bound = service_container(client, run, db)
    chain = [(f.name, dict(f.args)) for f in bound._ctx.selections]
    assert chain[0] == ("loadContainerFromID", {"id": "pg-id"})
    assert chain[-1] == ("asService", {"args": ["sh", "-ec", "postgres -D /data"]})
    env = {a["name"]: a["value"] for n, a in chain if n == "withEnvVariable"}
    assert env["POSTGRES_PASSWORD"] == "test"
    assert env["PARAPIPE_STEP"] == "test"  # never shared with another step's service
    assert "t0k-en" not in str(chain)  # a Dagger secret, by reference
    assert ("withSecretVariable", "TOKEN") in [(n, a.get("name")) for n, a in chain]
    step = step_container(client, run, [("db", bound)])
    step_chain = [(f.name, dict(f.args)) for f in step._ctx.selections]
    bindings = [a for n, a in step_chain if n == "withServiceBinding"]
    assert [b["alias"] for b in bindings] == ["db"]
    assert step_chain[-1][0] == "withExec"


def test_on_dagger_a_service_without_run_uses_the_images_own_command() -> None:
    import dagger

    from parapipe.engine.dagger.services import service_container

    run = make_step_run(run_id="r1", step="test")
    bound = service_container(dagger.Client(), run, service(image_id="pg-id"))
    assert (bound._ctx.selections[-1].name, dict(bound._ctx.selections[-1].args)) == (
        "asService",
        {"useEntrypoint": True},
    )


# -- export github -----------------------------------------------------------------------------

EXPORT_SPEC = """\
name: svc
image: {from: busybox:latest}
services:
  db: {image: "postgres:16", secrets: [DB_PASSWORD]}
  helper: {run: sleep 100}
steps:
  test: {run: echo test, services: [db, helper]}
  lint: {run: echo lint}
"""


@pytest.mark.parametrize("split", [False, True], ids=["one-job", "split"])
def test_export_runs_services_inside_parapipe_with_their_images_pulled(
    tmp_path: Path, split: bool
) -> None:
    import yaml

    from parapipe.git.github_export import github_workflow
    from tests.helpers.actionlint import check_with_actionlint

    (tmp_path / "ci.yaml").write_text(EXPORT_SPEC)
    text = github_workflow(load_pipeline(tmp_path / "ci.yaml"), split=split)
    check_with_actionlint(tmp_path, text)
    jobs = yaml.safe_load(text)["jobs"]
    job = jobs["test"] if split else jobs["pipeline"]
    assert "services" not in job  # GitHub's: on the job's network, not the step's
    names = [s.get("name") for s in job["steps"]]
    pull = job["steps"][names.index("Pull the services' images")]
    assert pull["run"] == (
        "docker image inspect postgres:16 >/dev/null 2>&1 || docker pull postgres:16\n"
    )
    run = job["steps"][-2]
    assert run["env"] == {"DB_PASSWORD": "${{ secrets.DB_PASSWORD }}"}
    if split:  # a step without services pulls nothing
        assert "Pull the services' images" not in [s.get("name") for s in jobs["lint"]["steps"]]
