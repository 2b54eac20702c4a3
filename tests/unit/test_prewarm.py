"""The runner's forecast of the containers its steps will still take."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from parapipe.engine.fake import FakeEngine, FakeStep
from parapipe.model import ImagePlan, Prewarm, Status, StepResult
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.run.prewarm import ContainerForecast, ExactCacheKeys, steps_taking_containers
from parapipe.run.state.step_cache import StepCache
from parapipe.run.state.step_data import StepData
from parapipe.spec.load import load_pipeline

TEMPLATE = Prewarm(run_id="r", image_id="i", workdir="/src", labels={}, jobs=4, soon=0, limit=0)


def forecast(
    needs: dict[str, tuple[str, ...]],
    taking: list[str] | None = None,
    *,
    keep_going: bool = False,
) -> ContainerForecast:
    return ContainerForecast(
        TEMPLATE, needs, list(needs) if taking is None else taking, keep_going=keep_going
    )


def counts(it: ContainerForecast) -> tuple[int, int]:
    request = it.request()
    assert request.jobs == TEMPLATE.jobs
    return request.soon, request.limit


def passed(name: str) -> StepResult:
    return StepResult(name=name, status=Status.PASSED)


def test_a_chain_wants_containers_two_steps_ahead() -> None:
    it = forecast({"a": (), "b": ("a",), "c": ("b",), "d": ("c",)})
    assert counts(it) == (2, 4)  # a, and b after it
    it.started("a")
    assert counts(it) == (3, 4)  # a's own, not taken yet; b and c
    it.taken("a")
    assert counts(it) == (2, 3)
    it.finished(passed("a"))
    assert counts(it) == (2, 3)
    it.started("b")
    it.taken("b")
    assert counts(it) == (2, 2)  # c and d
    it.finished(passed("b"))
    it.started("c")
    it.taken("c")
    assert counts(it) == (1, 1)
    it.finished(passed("c"))
    it.started("d")
    it.taken("d")
    assert counts(it) == (0, 0)


def test_steps_without_needs_may_all_start_soon() -> None:
    it = forecast({f"s{i}": () for i in range(10)})
    assert counts(it) == (10, 10)


def test_a_step_that_takes_no_container_is_never_counted() -> None:
    it = forecast({"cached": (), "runs": ("cached",), "later": ("runs",)}, taking=["runs"])
    assert counts(it) == (1, 1)  # `runs` may start soon; `cached` and `later` take none
    it.started("cached")
    assert counts(it) == (1, 1)
    it.finished(StepResult(name="cached", status=Status.CACHED))
    it.started("runs")
    it.taken("runs")
    assert counts(it) == (0, 0)


def test_skipped_steps_leave_the_forecast() -> None:
    it = forecast({"bad": (), "after": ("bad",), "other": ()}, keep_going=True)
    it.started("bad")
    it.started("other")
    it.taken("bad")
    it.taken("other")
    assert counts(it) == (1, 1)
    it.finished(StepResult(name="bad", status=Status.FAILED))
    it.finished(StepResult(name="after", status=Status.SKIPPED))
    assert counts(it) == (0, 0)


@pytest.mark.parametrize(
    ("status", "keep_going"),
    [
        (Status.FAILED, False),
        (Status.TIMED_OUT, False),
        (Status.ERROR, False),
        (Status.CANCELLED, True),
        (Status.INTERRUPTED, True),
    ],
)
def test_nothing_is_wanted_once_the_run_stops(status: Status, keep_going: bool) -> None:
    it = forecast({"a": (), "b": (), "c": (), "d": ()}, keep_going=keep_going)
    it.started("a")
    it.taken("a")
    it.finished(StepResult(name="a", status=status))
    assert counts(it) == (0, 0)


def test_a_failure_under_keep_going_still_wants_the_others() -> None:
    it = forecast({"a": (), "b": (), "c": ()}, keep_going=True)
    it.started("a")
    it.taken("a")
    it.finished(StepResult(name="a", status=Status.FAILED))
    assert counts(it) == (2, 2)


def test_an_allowed_failure_does_not_stop_the_forecast() -> None:
    it = forecast({"a": (), "b": ()})
    it.started("a")
    it.taken("a")
    it.finished(StepResult(name="a", status=Status.ALLOWED_FAILURE))
    assert counts(it) == (1, 1)


SPEC = """\
name: forecast
image: {from: busybox:latest}
steps:
  plain: {run: "true"}
  narrowed: {run: "true", inputs: ["src/**"]}
  uncached: {run: "true", cache: false}
  volume: {run: "true", caches: {pip: /root/.cache/pip}}
  only_docs: {run: "true", when: {changed: ["docs/**"]}}
"""


@pytest.fixture
def pipeline_path(tmp_path: Path) -> Path:
    (tmp_path / "ci.yaml").write_text(SPEC)
    return tmp_path / "ci.yaml"


def remember(pipeline_path: Path, *steps: str) -> None:
    pipeline = load_pipeline(pipeline_path)
    log = pipeline_path.parent / "log.txt"
    log.write_text("log\n")
    for step in steps:
        StepCache(pipeline.state_dir).store(f"key-{step}", pipeline.name, step, 1.0, log, None)


def taking(pipeline_path: Path, *, read_cache: bool = True, image_built: bool) -> list[str]:
    pipeline = load_pipeline(pipeline_path)
    return steps_taking_containers(
        pipeline,
        list(pipeline.steps),
        changed_files=frozenset({"src/app.py"}),
        read_cache=read_cache,
        image_built=image_built,
    )


def test_without_cache_entries_every_step_but_volumes_and_unchanged_ones_takes_one(
    pipeline_path: Path,
) -> None:
    assert taking(pipeline_path, image_built=False) == ["plain", "narrowed", "uncached"]


def test_steps_the_cache_may_serve_are_left_out(pipeline_path: Path) -> None:
    remember(pipeline_path, "plain", "narrowed", "uncached")
    # The same image as the entries': any step with an entry may be served.
    assert taking(pipeline_path, image_built=False) == ["uncached"]
    # A new image changes the key of every step but one whose inputs narrow it.
    assert taking(pipeline_path, image_built=True) == ["plain", "uncached"]
    # --no-cache
    assert taking(pipeline_path, read_cache=False, image_built=False) == [
        "plain",
        "narrowed",
        "uncached",
    ]


def test_steps_with_outputs_are_counted_apart() -> None:
    it = ContainerForecast(
        TEMPLATE,
        {"build": (), "lint": (), "test": ("build",)},
        ["build", "lint", "test"],
        with_outputs=["build"],
        keep_going=False,
    )
    request = it.request()
    assert (request.soon, request.limit) == (2, 2)  # lint and test
    assert (request.soon_with_outputs, request.limit_with_outputs) == (1, 1)  # build
    it.started("build")
    it.taken("build")
    request = it.request()
    assert (request.soon, request.limit, request.soon_with_outputs) == (2, 2, 0)


class ForecastRecorder(FakeEngine):
    """Keeps each forecast the run sends, and whether the engine's session was open for it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[int, int, bool]] = []
        self._open = False

    def session(self, run_dir: Path) -> AsyncIterator[None]:  # type: ignore[override]
        @asynccontextmanager
        async def open_session() -> AsyncIterator[None]:
            self._open = True
            try:
                yield
            finally:
                self._open = False

        return open_session()  # type: ignore[return-value]

    def prewarm(self, request: Prewarm) -> None:
        self.requests.append((request.soon, request.limit, self._open))


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("prewarm", [True, False])
async def test_the_run_tells_the_engine_its_forecast_as_steps_start_and_finish(
    tmp_path: Path, prewarm: bool
) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text(
        "name: told\nimage: {from: busybox:latest}\n"
        "steps:\n  a: {run: 'true'}\n  b: {run: 'true', needs: [a]}\n"
    )
    engine = ForecastRecorder()
    options = RunOptions(jobs=1, prewarm=prewarm)
    await run_pipeline(load_pipeline(spec), options, [], engine=engine)
    if not prewarm:
        assert engine.requests == []
        return
    # Once the image is ready; as `a` starts; as it finishes; as `b` starts; as it finishes.
    counts = [(soon, limit) for soon, limit, _ in engine.requests]
    assert counts == [(2, 2), (2, 2), (1, 1), (1, 1), (0, 0)]
    assert all(session_open for *_, session_open in engine.requests)


EXACT_SPEC = """\
name: exact
image: {{from: busybox:latest, exclude: [ci.yaml]}}
steps:
  build: {{run: 'true', outputs: [out.txt], env: {{V: "1"}}}}
  test: {{run: 'true', needs: [build], env: {{W: "{test}"}}}}
  lint: {{run: 'true', env: {{X: "{lint}"}}}}
"""


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_root_whose_env_changed_is_predicted_by_its_exact_key(tmp_path: Path) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text(EXACT_SPEC.format(test=1, lint=1))
    engine = ForecastRecorder()
    engine.steps["build"] = FakeStep(files={"out.txt": "built"})
    await run_pipeline(load_pipeline(spec), RunOptions(jobs=1), [], engine=engine)
    spec.write_text(EXACT_SPEC.format(test=1, lint=2))  # the image stays; lint's key changes
    engine.requests.clear()
    await run_pipeline(load_pipeline(spec), RunOptions(jobs=1), [], engine=engine)
    # Once the image is ready: lint will take a container (it has an entry, under its old key).
    assert engine.requests[0][:2] == (1, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_step_receiving_outputs_is_predicted_once_its_need_finished(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text(EXACT_SPEC.format(test=1, lint=1))
    engine = ForecastRecorder()
    engine.steps["build"] = FakeStep(files={"out.txt": "built"})
    await run_pipeline(load_pipeline(spec), RunOptions(jobs=1), [], engine=engine)
    spec.write_text(EXACT_SPEC.format(test=2, lint=1))
    engine.requests.clear()
    result = await run_pipeline(load_pipeline(spec), RunOptions(jobs=1), [], engine=engine)
    assert result.steps["build"].status is Status.CACHED
    assert result.steps["test"].status is Status.PASSED
    counts = [(soon, limit) for soon, limit, _ in engine.requests]
    # test's key holds build's outputs: guessed a hit until build finished, then known a miss.
    assert counts[0] == (0, 0)
    assert (1, 1) in counts


def test_exact_keys_wait_for_the_needs_that_hand_on_outputs(tmp_path: Path) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text(EXACT_SPEC.format(test=1, lint=1))
    pipeline = load_pipeline(spec)
    data = StepData(pipeline, tmp_path / "run", read_cache=True)
    plan = ImagePlan(
        tag="parapipe/exact:1", base_id="sha256:b", source=tmp_path, files=(), workdir="/src",
        env={}, setup=(), ca_bundle=None, labels={},
    )  # fmt: skip
    keys = ExactCacheKeys(pipeline, list(pipeline.steps), plan, data, lambda step: {})
    assert keys.hit("lint") is False
    assert keys.hit("test") is None  # build's outputs are part of its key
    lint = pipeline.steps["lint"]
    log = tmp_path / "log.txt"
    log.write_text("log\n")
    data.cache.store(data.key(lint, plan, {}), "exact", "lint", 1.0, log, None)
    assert keys.hit("lint") is True
    assert keys.finished("build") == ["test"]
    assert keys.hit("test") is False
