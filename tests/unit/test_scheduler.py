"""The scheduler on its own: ordering proved with events, never with wall-clock sleeps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import anyio
import pytest

from parapipe.model import Status, StepResult
from parapipe.run.scheduler import Scheduler

pytestmark = pytest.mark.anyio

DIAMOND = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}


class Recorder:
    """An executor whose steps can be held until the test releases them."""

    def __init__(self, exit_codes: Mapping[str, int] | None = None) -> None:
        self.exit_codes = dict(exit_codes or {})
        self.events: list[tuple[str, str]] = []
        self.started: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.release: dict[str, anyio.Event] = {}
        self.running = 0
        self.most_running = 0

    async def __call__(self, name: str) -> StepResult:
        self.events.append(("start", name))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.started[name].set()
        try:
            if name in self.release:
                await self.release[name].wait()
            await anyio.lowlevel.checkpoint()
        finally:
            self.running -= 1
        self.events.append(("end", name))
        code = self.exit_codes.get(name, 0)
        return StepResult(
            name=name, status=Status.PASSED if code == 0 else Status.FAILED, exit_code=code
        )


async def test_steps_start_only_after_their_needs_passed() -> None:
    recorder = Recorder()
    results = await Scheduler(DIAMOND, recorder, jobs=4).run()
    assert all(r.status is Status.PASSED for r in results.values())
    position = {event: index for index, event in enumerate(recorder.events)}
    assert position[("end", "a")] < position[("start", "b")]
    assert position[("end", "a")] < position[("start", "c")]
    assert position[("end", "b")] < position[("start", "d")]
    assert position[("end", "c")] < position[("start", "d")]


async def test_independent_steps_run_at_the_same_time() -> None:
    recorder = Recorder()
    # b cannot finish until c has started, and c not until b has: only overlap ends this.
    recorder.release = {"b": recorder.started["c"], "c": recorder.started["b"]}
    with anyio.fail_after(5):
        results = await Scheduler(DIAMOND, recorder, jobs=2).run()
    assert results["d"].status is Status.PASSED
    assert recorder.most_running == 2


async def test_jobs_bounds_how_many_run_at_once() -> None:
    recorder = Recorder()
    needs = {name: () for name in "abcdefgh"}
    await Scheduler(needs, recorder, jobs=3).run()
    assert recorder.most_running == 3
    assert len(recorder.events) == 16


async def test_a_failure_skips_its_dependents_naming_the_failed_step() -> None:
    recorder = Recorder({"a": 1})
    needs = {"a": (), "b": ("a",), "c": ("b",)}
    results = await Scheduler(needs, recorder, jobs=2).run()
    assert results["a"].status is Status.FAILED
    assert results["b"].status is Status.SKIPPED
    assert results["b"].reason == "needs 'a', which failed"
    assert results["c"].status is Status.SKIPPED
    assert "'a' failed" in results["c"].reason
    assert ("start", "b") not in recorder.events


async def test_fail_fast_stops_a_running_sibling_and_starts_nothing_more() -> None:
    recorder = Recorder({"fails": 1})
    never = anyio.Event()
    recorder.release = {"long": never, "fails": recorder.started["long"]}
    needs = {"long": (), "fails": (), "later": (), "after_long": ("long",)}
    with anyio.fail_after(5):
        results = await Scheduler(needs, recorder, jobs=2).run()
    assert results["fails"].status is Status.FAILED
    assert results["long"].status is Status.CANCELLED
    assert "'fails' failed" in results["long"].reason
    assert results["later"].status is Status.CANCELLED
    assert results["later"].reason.startswith("not started")
    assert results["after_long"].status is Status.CANCELLED
    assert ("start", "later") not in recorder.events


async def test_keep_going_runs_everything_that_does_not_depend_on_the_failure() -> None:
    recorder = Recorder({"b": 1})
    results = await Scheduler(DIAMOND, recorder, jobs=1, keep_going=True).run()
    assert results["b"].status is Status.FAILED
    assert results["c"].status is Status.PASSED
    assert results["d"].status is Status.SKIPPED


async def test_interrupt_stops_running_steps_and_marks_the_rest() -> None:
    recorder = Recorder()
    recorder.release = {"a": anyio.Event()}
    scheduler = Scheduler(DIAMOND, recorder, jobs=2)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(scheduler.run)
        await recorder.started["a"].wait()
        scheduler.interrupt()
    results = scheduler.results
    assert results["a"].status is Status.INTERRUPTED
    assert {results[name].status for name in "bcd"} == {Status.INTERRUPTED}
    assert results["d"].reason == "not started: interrupted"


async def test_ready_steps_start_in_priority_order() -> None:
    recorder = Recorder()
    needs = {"a": (), "b": (), "c": ()}
    await Scheduler(needs, recorder, jobs=1, priority={"a": 3, "b": 1, "c": 2}).run()
    starts = [name for kind, name in recorder.events if kind == "start"]
    assert starts == ["b", "c", "a"]


async def test_every_step_is_reported_once_as_it_finishes() -> None:
    finished: list[str] = []
    started: list[str] = []
    recorder = Recorder({"b": 1})
    await Scheduler(
        DIAMOND,
        recorder,
        jobs=2,
        keep_going=True,
        on_start=started.append,
        on_finish=lambda r: finished.append(r.name),
    ).run()
    assert sorted(finished) == ["a", "b", "c", "d"]
    assert sorted(started) == ["a", "b", "c"]


def test_remaining_path_lengths_weight_steps_by_their_durations() -> None:
    from parapipe.graph import remaining_path_lengths

    needs = {"a": (), "b": ("a",), "c": ("b",), "short": (), "unknown": ("short",)}
    lengths = remaining_path_lengths(needs, {"a": 1, "b": 2, "c": 3, "short": 0.5})
    assert lengths["c"] == 3
    assert lengths["a"] == 6
    assert lengths["unknown"] == 1.5  # the median of the known durations
    assert lengths["short"] == 2.0


async def test_critical_path_first_beats_first_come_on_a_long_chain_beside_short_steps() -> None:
    """With jobs=1 order is everything: the chain's head must start before the short steps."""
    from parapipe.graph import remaining_path_lengths

    needs = {"s1": (), "s2": (), "s3": (), "c1": (), "c2": ("c1",), "c3": ("c2",)}
    durations = {"s1": 1, "s2": 1, "s3": 1, "c1": 3, "c2": 3, "c3": 3}
    priority = {n: -length for n, length in remaining_path_lengths(needs, durations).items()}
    recorder = Recorder()
    await Scheduler(needs, recorder, jobs=1, priority=priority).run()
    starts = [name for kind, name in recorder.events if kind == "start"]
    assert starts[0] == "c1"
    fifo = Recorder()
    await Scheduler(needs, fifo, jobs=1).run()
    assert [name for kind, name in fifo.events if kind == "start"][:3] == ["s1", "s2", "s3"]
