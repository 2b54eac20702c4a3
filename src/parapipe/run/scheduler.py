"""Runs a graph of steps: each starts the moment all of its needs passed, at most `jobs` at once.

The scheduler knows nothing of containers. It calls `execute(name)` for each step that may run
and decides, from the results alone, what starts next, what is skipped and what is stopped.
"""

from __future__ import annotations

import graphlib
import heapq
import math
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio
from anyio.abc import ObjectSendStream

from parapipe.model import Status, StepResult

StepExecutor = Callable[[str], Awaitable[StepResult]]

# A need that ended like this makes its dependents "skipped"; a need that was stopped
# (cancelled, interrupted) leaves them "not started" under the same status as the stop.
_BLOCKING = frozenset(
    {Status.FAILED, Status.TIMED_OUT, Status.ALLOWED_FAILURE, Status.ERROR, Status.SKIPPED}
)


def _ignore(_: object) -> None:
    pass


class Scheduler:
    def __init__(
        self,
        needs: Mapping[str, tuple[str, ...]],
        execute: StepExecutor,
        *,
        jobs: int,
        keep_going: bool = False,
        priority: Mapping[str, float] | None = None,
        on_start: Callable[[str], None] = _ignore,
        on_finish: Callable[[StepResult], None] = _ignore,
    ) -> None:
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self._needs = needs
        self._execute = execute
        self._jobs = jobs
        self._keep_going = keep_going
        # Lower runs first; ties, and every step when no priority is given, go in the order
        # they became ready.
        self._priority = priority or {}
        self._ready_count = 0
        self._on_start = on_start
        self._on_finish = on_finish
        self._results: dict[str, StepResult] = {}
        self._running: dict[str, anyio.CancelScope] = {}
        self._stop_reason: str | None = None
        self._interrupted = False
        # The step whose failure a skipped step traces back to, for its reason.
        self._root_failure: dict[str, str] = {}

    @property
    def results(self) -> dict[str, StepResult]:
        return dict(self._results)

    def interrupt(self) -> None:
        """Stop every running step and start nothing more (Ctrl-C, SIGTERM)."""
        self._interrupted = True
        self._stop("interrupted")

    async def run(self) -> dict[str, StepResult]:
        sorter = graphlib.TopologicalSorter(self._needs)
        sorter.prepare()
        ready: list[tuple[float, int, str]] = []
        send, receive = anyio.create_memory_object_stream[StepResult](math.inf)
        async with send, receive, anyio.create_task_group() as task_group:
            while True:
                self._admit(sorter, ready)
                while ready and len(self._running) < self._jobs and self._stop_reason is None:
                    *_, name = heapq.heappop(ready)
                    scope = anyio.CancelScope()
                    self._running[name] = scope
                    self._on_start(name)
                    task_group.start_soon(self._run_one, name, scope, send.clone())
                if not self._running:
                    # Nothing runs, so everything ready was started or settled by `_admit`.
                    if ready or sorter.is_active():
                        raise RuntimeError(f"scheduler stalled with {ready!r} ready")
                    break
                result = await receive.receive()
                del self._running[result.name]
                self._finish(sorter, result)
        return self.results

    def _admit(
        self, sorter: graphlib.TopologicalSorter[str], ready: list[tuple[float, int, str]]
    ) -> None:
        """Queue the steps whose needs are all done, or settle them at once if they cannot run."""
        while True:
            names = sorter.get_ready()
            if not names and not (self._stop_reason and ready):
                return
            for name in names:
                blocker = next(
                    (n for n in self._needs[name] if not self._results[n].status.ok), None
                )
                if blocker is not None and self._results[blocker].status in _BLOCKING:
                    self._finish(sorter, self._skipped(name, blocker))
                elif blocker is not None or self._stop_reason is not None:
                    self._finish(sorter, self._not_started(name))
                else:
                    self._ready_count += 1
                    entry = (self._priority.get(name, 0.0), self._ready_count, name)
                    heapq.heappush(ready, entry)
            if self._stop_reason is not None:
                while ready:
                    *_, name = heapq.heappop(ready)
                    self._finish(sorter, self._not_started(name))

    async def _run_one(
        self, name: str, scope: anyio.CancelScope, send: ObjectSendStream[StepResult]
    ) -> None:
        started = time.time()
        result: StepResult | None = None
        async with send:
            with scope:
                result = await self._execute(name)
            if result is None:  # cancelled by fail-fast or an interrupt
                result = StepResult(
                    name=name,
                    status=Status.INTERRUPTED if self._interrupted else Status.CANCELLED,
                    started_at=started,
                    duration=time.time() - started,
                    reason="interrupted" if self._interrupted else f"stopped: {self._stop_reason}",
                )
            await send.send(result)

    def _finish(self, sorter: graphlib.TopologicalSorter[str], result: StepResult) -> None:
        self._results[result.name] = result
        sorter.done(result.name)
        self._on_finish(result)
        if result.status.failed or result.status is Status.ERROR:
            self._root_failure[result.name] = result.name
            if not self._keep_going:
                self._stop(f"'{result.name}' {result.status.value} (fail-fast)")

    def _stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        for scope in self._running.values():
            scope.cancel()

    def _skipped(self, name: str, blocker: str) -> StepResult:
        blocked_by = self._results[blocker]
        root = self._root_failure.get(blocker, blocker)
        self._root_failure[name] = root
        if root == blocker:
            reason = f"needs '{blocker}', which {_past(blocked_by.status)}"
        else:
            reason = f"needs '{blocker}', which was skipped because '{root}' failed"
        return StepResult(name=name, status=Status.SKIPPED, reason=reason)

    def _not_started(self, name: str) -> StepResult:
        if self._interrupted:
            return StepResult(
                name=name, status=Status.INTERRUPTED, reason="not started: interrupted"
            )
        return StepResult(
            name=name, status=Status.CANCELLED, reason=f"not started: {self._stop_reason}"
        )


def _past(status: Status) -> str:
    return {
        Status.FAILED: "failed",
        Status.TIMED_OUT: "timed out",
        Status.ALLOWED_FAILURE: "failed (allowed)",
        Status.ERROR: "hit an engine error",
        Status.CANCELLED: "was cancelled",
        Status.INTERRUPTED: "was interrupted",
        Status.SKIPPED: "was skipped",
    }.get(status, status.value)
