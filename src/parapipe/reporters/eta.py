"""How long a run still has to go, from how long its steps took in earlier runs.

The rest of the run is played out on paper: running steps finish when their usual duration is
up, and waiting steps start as their needs finish, at most `jobs` at once, in the order given.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from parapipe.reporters.summary import format_duration


@dataclass(frozen=True, kw_only=True)
class Estimate:
    seconds: float
    unknown: tuple[str, ...]  # steps still to finish with no earlier duration: counted as 0 s

    def describe(self) -> str:
        """`about 1m20s left`; `at least 40.0s left` when some steps have no earlier time."""
        prefix = "at least" if self.unknown else "about"
        return f"{prefix} {format_duration(self.seconds)} left"


def estimate_remaining(
    needs: Mapping[str, Sequence[str]],
    expected: Mapping[str, float],
    *,
    done: Collection[str],
    running: Mapping[str, float],
    jobs: int,
) -> Estimate | None:
    """Seconds until the last step of `needs` (in run order) finishes.

    `running` maps each running step to how long it has run. None when no step still to run
    has an earlier duration: there is nothing to base a guess on.
    """
    remaining = [name for name in needs if name not in done]
    if not remaining:
        return Estimate(seconds=0.0, unknown=())
    unknown = tuple(name for name in remaining if name not in expected)
    if len(unknown) == len(remaining):
        return None
    clock = 0.0
    active = [(max(expected.get(name, 0.0) - ran, 0.0), name) for name, ran in running.items()]
    heapq.heapify(active)
    settled = set(done)
    pending = [name for name in remaining if name not in running]
    while pending or active:
        while len(active) < max(jobs, 1):
            ready = next(
                (n for n in pending if all(d in settled or d not in needs for d in needs[n])),
                None,
            )
            if ready is None:
                break
            pending.remove(ready)
            heapq.heappush(active, (clock + expected.get(ready, 0.0), ready))
        if not active:
            break  # only steps whose needs are not in this run's graph: nothing more to learn
        clock, name = heapq.heappop(active)
        settled.add(name)
    return Estimate(seconds=clock, unknown=unknown)
