"""The one stream of what happens in a run: the run publishes events, subscribers hear them.

The reporters and the prewarm are subscribers. They only read events; nothing they do changes
what the run decides. Events are published from the event loop thread, in the order things
happen: a subscriber must not block.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from parapipe.model import ImagePlan, ImageResult, RunInfo, RunResult, StepResult


@dataclass(frozen=True, kw_only=True)
class RunStarted:
    info: RunInfo


@dataclass(frozen=True, kw_only=True)
class ImageStarted:
    tag: str


@dataclass(frozen=True, kw_only=True)
class ImageOutput:
    line: str  # secrets already masked


@dataclass(frozen=True, kw_only=True)
class ImageFinished:
    result: ImageResult
    plan: ImagePlan | None = None  # what went into the image, once it is ready


@dataclass(frozen=True, kw_only=True)
class StepScheduled:
    """The scheduler gave `name` its slot: it starts now, or is settled as unchanged."""

    name: str


@dataclass(frozen=True, kw_only=True)
class StepStarted:
    """`name` runs (or is restored from the step cache); an unchanged step never starts."""

    name: str


@dataclass(frozen=True, kw_only=True)
class ContainerWanted:
    """An attempt of `step` is about to ask the engine for its container."""

    step: str
    attempt: int


@dataclass(frozen=True, kw_only=True)
class StepOutput:
    name: str
    line: str  # secrets already masked


@dataclass(frozen=True, kw_only=True)
class StepFinished:
    result: StepResult


@dataclass(frozen=True, kw_only=True)
class StepsOver:
    """No step starts or runs any more, and the engine's session is closing. The steps that
    never started are still reported as finished after this."""


@dataclass(frozen=True, kw_only=True)
class RunFinished:
    result: RunResult


RunEvent = (
    RunStarted
    | ImageStarted
    | ImageOutput
    | ImageFinished
    | StepScheduled
    | StepStarted
    | ContainerWanted
    | StepOutput
    | StepFinished
    | StepsOver
    | RunFinished
)


class Subscriber(Protocol):
    def handle(self, event: RunEvent) -> None: ...


class EventStream:
    """Hands every event to each subscriber in order. One that raises does not keep the others
    from hearing the event (a report that cannot be written must not lose the summary or the
    other reports); the first error is raised once all have heard it."""

    def __init__(self, subscribers: Iterable[Subscriber]) -> None:
        self.subscribers = tuple(subscribers)

    def publish(self, event: RunEvent) -> None:
        first: Exception | None = None
        for subscriber in self.subscribers:
            try:
                subscriber.handle(event)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first
