"""The same pipelines on every reachable engine, each expected to give one and the same result:
statuses, exit codes, logs, the run's exit code and the order the graph allows."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from parapipe.engine.registry import choose_engine
from parapipe.model import LABEL_PIPELINE, LABEL_RUN, RunResult, StepResult
from parapipe.reporters.base import Reporter
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.spec.load import load_pipeline
from tests.conformance.pipelines import ALL, PASS, PREPARE, SETUP_FAILS, Conformance
from tests.helpers.docker import prune_cache_mounts, remove_pipeline_images
from tests.helpers.podman import remove_buildah_cache_mounts

# The engines that start step containers ahead of the steps (`parapipe run --no-prewarm` stops
# them): the suite runs on them with the pool and without.
POOLING_ENGINES = ("docker", "podman")

pytestmark = pytest.mark.anyio


class Recorder(Reporter):
    """Keeps the order steps started and finished in, as the runner reports it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def step_started(self, name: str) -> None:
        self.events.append(("start", name))

    def step_finished(self, result: StepResult) -> None:
        self.events.append(("end", result.name))


@pytest.fixture
def pipeline_name(engine: str) -> Iterator[str]:
    name = f"conformance-{uuid.uuid4().hex[:10]}"
    if engine not in ("docker", "podman"):
        yield name
        return
    # Only this pipeline's: another build running meanwhile has its newest layer dangling
    # until its next step builds on it, and removing that breaks that build.
    ours_dangling = ("--filter", "dangling=true", "--filter", f"label={LABEL_PIPELINE}={name}")
    dangling_before = set(_images(engine, *ours_dangling))
    yield name
    # Images are a run's product, meant to be reused; the suite's own are not. Nor are the
    # untagged layers a failed build leaves (Podman keeps them as images).
    ours = set(_images(engine, f"parapipe/{name}"))
    ours |= set(_images(engine, *ours_dangling)) - dangling_before
    if ours:
        subprocess.run([engine, "image", "rm", "-f", *sorted(ours)], capture_output=True)
    volumes = subprocess.run(
        [engine, "volume", "ls", "-q", "--filter", f"label={LABEL_PIPELINE}={name}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if volumes:
        subprocess.run([engine, "volume", "rm", "-f", *volumes], capture_output=True)
    remove_pipeline_images(name, engine)  # its source stages too
    remove_buildah_cache_mounts(name)
    if engine == "docker":
        prune_cache_mounts("/prepared-saw")  # the PREPARE case's first command


def _images(engine: str, *selection: str) -> list[str]:
    listed = subprocess.run(
        [engine, "image", "ls", "-q", *selection], capture_output=True, text=True, check=False
    )
    return listed.stdout.split()


def write_project(root: Path, name: str, case: Conformance) -> Path:
    spec = root / "ci.yaml"
    spec.write_text(f"name: {name}\n{case.spec}")
    for path, text in case.files.items():
        (root / path).write_text(text)
    return spec


def step_log(result: StepResult) -> list[str]:
    """The step's log without the runner's closing line, which holds a duration."""
    assert result.log_path is not None, result
    lines = result.log_path.read_text().splitlines()
    assert lines[-1].startswith(f"parapipe: {result.status.value}"), lines
    return lines[:-1]


def assert_no_container_left(engine: str, run_id: str) -> None:
    if engine not in ("docker", "podman"):
        return  # Dagger's containers live inside its engine and end with their exec
    listed = subprocess.run(
        [engine, "ps", "-aq", "--filter", f"label={LABEL_RUN}={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.split() == []
    networks = subprocess.run(  # the networks of steps with services
        [engine, "network", "ls", "-q", "--filter", f"label={LABEL_RUN}={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert networks.stdout.split() == []


@pytest.mark.parametrize("prewarm", [True, False], ids=["pool", "no-pool"])
@pytest.mark.parametrize("case", ALL, ids=[case.name for case in ALL])
async def test_every_engine_gives_the_same_result(
    engine: str, pipeline_name: str, case: Conformance, prewarm: bool, tmp_path: Path
) -> None:
    if prewarm and engine not in POOLING_ENGINES:
        pytest.skip(f"{engine} starts no containers ahead of its steps: no pool to compare")
    spec = write_project(tmp_path, pipeline_name, case)
    recorder = Recorder()
    options = RunOptions(jobs=4, keep_going=case.keep_going, prewarm=prewarm, secrets=case.secrets)
    chosen, reason = await choose_engine(engine)
    result: RunResult = await run_pipeline(
        load_pipeline(spec), options, [recorder], engine=chosen, engine_reason=reason
    )

    assert result.engine == engine
    assert result.exit_code == case.exit_code, result
    assert {name: r.status for name, r in result.steps.items()} == case.statuses
    assert {name: result.steps[name].exit_code for name in case.exit_codes} == case.exit_codes
    for name, lines in case.logs.items():
        assert step_log(result.steps[name]) == lines, name
    for name, reason in case.reasons.items():
        assert result.steps[name].reason == reason, name
    assert result.image is not None
    assert result.image.reason == (case.image_failure or "")
    for before, after in case.order:
        assert recorder.events.index(("end", before)) < recorder.events.index(("start", after))
    for path, text in case.artifacts.items():
        assert (result.run_dir / "artifacts" / path).read_text() == text, path
    assert_no_container_left(engine, result.run_id)
    if engine in POOLING_ENGINES:
        # A step that waited for its needs finds a container the pool started meanwhile.
        pipeline = load_pipeline(spec)
        waited = [
            n
            for n, r in result.steps.items()
            if pipeline.steps[n].needs and r.exit_code is not None
        ]
        pooled = re.findall(r"takes step '([^']+)'", _pool_log(result))
        assert bool(pooled) is (prewarm and (bool(waited) or case.lends_networks)), pooled
        lent = "starting in the network of" in _pool_log(result)
        assert lent is (prewarm and case.lends_networks), _pool_log(result)


# The cases that build with `image.caches`: with the setup failure given caches too.
_COMMITTED_CASES = [
    PREPARE,
    dataclasses.replace(
        SETUP_FAILS,
        name="setup-fails-cached",
        spec=SETUP_FAILS.spec.replace("\nsteps:", "\n  caches: {c: /cache}\nsteps:", 1),
    ),
]


@pytest.mark.parametrize("engine", ["docker"], indirect=True)
@pytest.mark.parametrize("case", _COMMITTED_CASES, ids=[case.name for case in _COMMITTED_CASES])
async def test_docker_without_buildkit_gives_the_same_result(
    engine: str,
    pipeline_name: str,
    case: Conformance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`image.caches` with Docker's legacy builder: prepare and setup run in a container that is
    committed. parapipe reads `DOCKER_BUILDKIT=0` before it would probe for BuildKit (whose
    verdict it keeps per process), so this holds whatever ran before in this process."""
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    await test_every_engine_gives_the_same_result(engine, pipeline_name, case, False, tmp_path)


def _pool_log(result: RunResult) -> str:
    path = result.run_dir / "pool.txt"
    return path.read_text() if path.exists() else ""


def test_the_cli_names_the_engine_on_the_first_line(
    engine: str, pipeline_name: str, tmp_path: Path
) -> None:
    write_project(tmp_path, pipeline_name, PASS)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "parapipe",
            "run",
            "-f",
            "ci.yaml",
            "--engine",
            engine,
            "--output",
            "plain",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    first = completed.stdout.splitlines()[0]
    # An engine away from its client's default is named with where it is (`docker-isolated`).
    host = os.environ.get({"docker": "DOCKER_HOST", "podman": "CONTAINER_HOST"}.get(engine, ""))
    where = f" at {host}" if host else ""
    assert f"engine {engine}{where} (--engine {engine})" in first, first
