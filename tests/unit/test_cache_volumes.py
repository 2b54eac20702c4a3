"""Cache volumes without containers: their names, the argv that makes and mounts them, Dagger's
chain, and what the runner hands the engine."""

from __future__ import annotations

import re
from pathlib import Path

import dagger
import pytest

from parapipe.engine.api import CacheVolume, StepRun, cache_volume_name
from parapipe.engine.dagger.engine import step_container
from parapipe.engine.docker import argv as argvs
from parapipe.engine.fake import FakeEngine
from parapipe.model import LABEL_CACHE, LABEL_PIPELINE
from parapipe.reporters.base import Reporter
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.spec.load import load_pipeline

VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
PIP = CacheVolume(name="parapipe-cache-ci-pip", pipeline="ci", cache="pip", path="/root/.cache/pip")


def test_a_volume_is_named_after_the_pipeline_and_the_cache() -> None:
    assert cache_volume_name("ci", "pip") == "parapipe-cache-ci-pip"
    assert cache_volume_name("My_App.v2", "npm-store") == "parapipe-cache-My_App.v2-npm-store"


def test_a_pipeline_name_that_must_change_gets_a_hash_so_pipelines_never_share_a_cache() -> None:
    spaced = cache_volume_name("my app", "pip")
    dashed = cache_volume_name("my-app", "pip")
    assert VOLUME_NAME.fullmatch(spaced)
    assert spaced.startswith("parapipe-cache-my-app-")
    assert spaced.endswith("-pip")
    assert spaced != dashed
    assert VOLUME_NAME.fullmatch(cache_volume_name("ünïcode / ☃" * 20, "c"))


def test_docker_run_mounts_each_cache_volume() -> None:
    run = StepRun(
        run_id="r",
        step="test",
        image_id="sha256:abc",
        commands=("pytest",),
        env={},
        workdir="/src",
        labels={},
        caches=(PIP, CacheVolume(name="v2", pipeline="ci", cache="npm", path="/root/.npm")),
    )
    argv = argvs.run_argv("docker", run, "c1")
    mounts = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-v"]
    assert mounts == ["parapipe-cache-ci-pip:/root/.cache/pip", "v2:/root/.npm"]
    assert argv.index("-v") < argv.index("sha256:abc")


def test_a_cache_volume_is_created_with_labels_to_find_it_by() -> None:
    assert argvs.volume_create_argv("podman", PIP) == [
        "podman",
        "volume",
        "create",
        "--label",
        f"{LABEL_PIPELINE}=ci",
        "--label",
        f"{LABEL_CACHE}=pip",
        "parapipe-cache-ci-pip",
    ]
    assert argvs.volume_inspect_argv("docker", "v")[:3] == ["docker", "volume", "inspect"]


def test_dagger_mounts_a_cache_volume_of_the_same_name() -> None:
    run = StepRun(
        run_id="r",
        step="test",
        image_id="image-id",
        commands=("pytest",),
        env={},
        workdir="/src",
        labels={},
        caches=(PIP,),
    )
    chain = [(f.name, dict(f.args)) for f in step_container(dagger.Client(), run)._ctx.selections]
    names = [name for name, _ in chain]
    assert names.index("withMountedCache") < names.index("withExec")
    (mount,) = [args for name, args in chain if name == "withMountedCache"]
    assert mount["path"] == "/root/.cache/pip"
    volume = [(f.name, dict(f.args)) for f in mount["cache"]._ctx.selections]
    assert volume == [("cacheVolume", {"key": "parapipe-cache-ci-pip"})]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_runner_hands_each_step_the_volumes_of_its_caches(tmp_path: Path) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text(
        "name: shop\n"
        "image: {from: busybox:latest}\n"
        "steps:\n"
        "  deps: {run: pip download x, caches: {pip: /root/.cache/pip}}\n"
        "  test: {run: pytest, caches: {pip: /root/.cache/pip/, npm: /root/.npm}}\n"
        "  lint: {run: ruff}\n"
    )
    engine = FakeEngine()
    await run_pipeline(load_pipeline(spec), RunOptions(), [Reporter()], engine=engine)
    caches = {run.step: run.caches for run in engine.runs}
    pip = CacheVolume(
        name="parapipe-cache-shop-pip", pipeline="shop", cache="pip", path="/root/.cache/pip"
    )
    assert caches["deps"] == (pip,)
    assert caches["test"] == (
        pip,
        CacheVolume(
            name="parapipe-cache-shop-npm", pipeline="shop", cache="npm", path="/root/.npm"
        ),
    )
    assert caches["lint"] == ()
