"""The pool inside the Docker engine, with a fake `docker` CLI that runs each container's command
on this host: what the pool starts, hands out, falls back from and removes, without a daemon."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from parapipe.engine.api import StepRun
from parapipe.engine.docker.engine import DockerEngine
from parapipe.errors import EngineError
from parapipe.model import Prewarm
from tests.helpers.steps import make_step_run

pytestmark = pytest.mark.anyio

# Runs `docker run/create ... IMAGE COMMAND...` as COMMAND in WORKDIR with the `-e` variables,
# answers `image inspect` with $FAKE_ENTRYPOINT, and records every call in $FAKE_DOCKER_LOG.
FAKE_DOCKER = """
import os, sys
args = sys.argv[1:]
def record(*words):
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
        log.write(" ".join(words) + "\\n")
if args[:2] == ["image", "inspect"]:
    print(os.environ.get("FAKE_ENTRYPOINT", "null"))
    sys.exit(0)
if args[0] == "rm":
    record("rm", *[a for a in args[1:] if a != "-f"])
    sys.exit(0)
if args[0] != "run":
    sys.exit(f"fake docker: no {args[0]}")
with_value = {"--name", "--label", "-e", "-w", "--env-file", "-v", "--network"}
flags, i = {}, 1
env = {}
while args[i].startswith("-"):
    if args[i] in with_value:
        if args[i] == "-e":
            name, _, value = args[i + 1].partition("=")
            env[name] = value if _ else os.environ[name]
        flags[args[i]] = args[i + 1]
        i += 2
    else:
        flags[args[i]] = ""
        i += 1
command = args[i + 1:]
network = [f"--network={flags['--network']}"] if "--network" in flags else []
record("run", flags["--name"], *sorted(f for f in ("-i", "--rm") if f in flags), *network)
if "-i" in flags and os.environ.get("FAKE_POOL") == "broken":
    sys.exit("docker: Error response from daemon: no such image")
if "-i" in flags and os.environ.get("FAKE_POOL") == "idle":
    command = ["sh", "-c", "printf 'parapipe-pool: ready\\\\n'; cat > /dev/null"]
os.chdir(flags.get("-w", "/"))
os.environ.update(env)
os.execvp(command[0], command)
"""

RUN_ID = "20260101-000000.000-fake"
IMAGE = "sha256:" + "f" * 64
LABELS = {"io.parapipe.pipeline": "fake"}


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "docker-calls"
    log.touch()
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    return log


@pytest.fixture
async def engine(tmp_path: Path, calls: Path) -> AsyncIterator[DockerEngine]:
    fake = tmp_path / "docker"
    fake.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
    fake.chmod(0o755)
    fake_engine = type("FakeDockerEngine", (DockerEngine,), {"binary": str(fake)})()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    async with fake_engine.session(run_dir):
        yield fake_engine


def request(**counts: int) -> Prewarm:
    return Prewarm(run_id=RUN_ID, image_id=IMAGE, workdir="/tmp", labels=LABELS, jobs=2, **counts)


def step(name: str, *commands: str, **fields: object) -> StepRun:
    env = {"GREETING": "it's $HOME"}
    defaults = {
        "run_id": RUN_ID,
        "image_id": IMAGE,
        "env": env,
        "workdir": "/tmp",
        "labels": LABELS,
    }
    return make_step_run(step=name, commands=commands, **{**defaults, **fields})


def runs(calls: Path) -> list[list[str]]:
    """The pooled containers and the steps' own, without the network holders."""
    return [call for call in all_runs(calls) if ".net-" not in call[1]]


def all_runs(calls: Path) -> list[list[str]]:
    return [line.split() for line in calls.read_text().splitlines() if line.startswith("run ")]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for something the pool does in the background (no time is asserted)."""
    for _ in range(1500):
        if condition():
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


def journal(tmp_path: Path) -> str:
    path = tmp_path / "run" / "pool.txt"
    return path.read_text() if path.exists() else ""


async def test_a_step_runs_in_a_container_the_pool_started_for_it(
    engine: DockerEngine, calls: Path, tmp_path: Path
) -> None:
    engine.prewarm(request(soon=1, limit=1))
    await until(lambda: " up\n" in journal(tmp_path), "the container is up")
    lines: list[str] = []
    code = await engine.run_step(step("greet", 'echo "$GREETING"', "pwd", "exit 3"), lines.append)
    assert code == 3
    assert lines == [
        '$ echo "$GREETING"',
        "it's $HOME",
        "$ pwd",
        "/tmp",
        "$ exit 3",
        "parapipe: exit 3",
    ]
    (started,) = runs(calls)
    assert started[2:] == ["--rm", "-i"]
    assert f"{started[1]} takes step 'greet'" in journal(tmp_path)


async def test_the_pool_holds_what_is_asked_and_no_more(
    engine: DockerEngine, calls: Path, tmp_path: Path
) -> None:
    engine.prewarm(request(soon=5, limit=5))  # five may start soon, two jobs: two ready
    await until(lambda: journal(tmp_path).count(" up\n") == 2, "two containers are up")
    assert len(runs(calls)) == 2
    engine.prewarm(request(soon=1, limit=1))  # only one step left to come: one goes
    await until(lambda: "is not needed any more" in journal(tmp_path), "one is dropped")
    engine.prewarm(request())  # fail-fast: nothing more will start
    await until(lambda: journal(tmp_path).count("is not needed any more") == 2, "all dropped")
    assert len(runs(calls)) == 2
    lines: list[str] = []
    assert await engine.run_step(step("late", "echo late"), lines.append) == 0
    # Nothing was held for it: it gets a container started for it alone, there and then.
    assert len(runs(calls)) == 3
    assert f"{runs(calls)[-1][1]} takes step 'late'" in journal(tmp_path)


async def test_once_a_container_is_up_later_ones_start_in_a_holders_network(
    engine: DockerEngine, calls: Path, tmp_path: Path
) -> None:
    engine.prewarm(request(soon=2, limit=12))
    await until(lambda: "its network can be lent" in journal(tmp_path), "a holder is up")
    # None started before the first container was up.
    assert journal(tmp_path).index(" up\n") < journal(tmp_path).index(".net-1 starting")
    lines: list[str] = []
    for number in range(6):
        assert await engine.run_step(step(f"s{number}", "echo $GREETING"), lines.append) == 0
    assert lines.count("it's $HOME") == 6
    # Read once the steps ran: a holder's (fake) CLI may record its call after it was started.
    holders = [call[1] for call in all_runs(calls) if ".net-" in call[1]]
    # Two jobs: at most three holders.
    assert 1 <= len(holders) <= 3
    networks = [call[-1] for call in runs(calls) if call[-1].startswith("--network=")]
    assert networks, journal(tmp_path)
    assert {network.removeprefix("--network=container:") for network in networks} <= set(holders)


async def test_a_step_with_outputs_gets_a_container_kept_to_copy_them_out(
    engine: DockerEngine, calls: Path, tmp_path: Path
) -> None:
    engine.prewarm(request(soon=1, limit=1, soon_with_outputs=1, limit_with_outputs=1))
    await until(lambda: journal(tmp_path).count(" up\n") == 2, "both kinds are up")
    kinds = sorted(tuple(call[2:]) for call in runs(calls))
    assert kinds == [("--rm", "-i"), ("-i",)]


async def test_steps_the_pool_cannot_serve_start_their_own_container(
    engine: DockerEngine, calls: Path, tmp_path: Path
) -> None:
    engine.prewarm(request(soon=2, limit=2))
    await until(lambda: journal(tmp_path).count(" up\n") == 2, "two containers are up")
    lines: list[str] = []
    assert await engine.run_step(step("uid", "echo $UID", env={"UID": "7"}), lines.append) == 0
    assert lines == ["$ echo $UID", "7"]
    assert runs(calls)[-1][2:] == ["--rm"]  # `docker run --rm`, the step's own
    assert "takes step" not in journal(tmp_path)


async def test_an_image_with_an_entrypoint_turns_the_pool_off(
    engine: DockerEngine, calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENTRYPOINT", '["/entry.sh"]')
    engine.prewarm(request(soon=2, limit=2))
    await until(lambda: "no more pooled containers" in journal(tmp_path), "the pool gives up")
    lines: list[str] = []
    assert await engine.run_step(step("a", "echo a"), lines.append) == 0
    assert [call[2:] for call in runs(calls)] == [["--rm"]]


async def test_containers_that_never_come_up_turn_the_pool_off(
    engine: DockerEngine, calls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_POOL", "broken")
    engine.prewarm(request(soon=5, limit=5))
    await until(lambda: "no more pooled containers" in journal(tmp_path), "the pool gives up")
    assert "no such image" in journal(tmp_path)  # the CLI's own words, for whoever looks
    lines: list[str] = []
    assert await engine.run_step(step("a", "echo a"), lines.append) == 0
    assert lines == ["$ echo a", "a"]


async def test_a_container_that_ends_without_running_the_step_is_an_engine_error(
    engine: DockerEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Its loader read the script and exited 0 without running it: never a passed step.
    monkeypatch.setenv("FAKE_POOL", "idle")
    engine.prewarm(request(soon=1, limit=1))
    await until(lambda: " up\n" in journal(tmp_path), "the container is up")
    with pytest.raises(EngineError, match="ended without running step 'a'"):
        await engine.run_step(step("a", "echo a"), lambda line: None)
