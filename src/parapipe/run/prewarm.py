"""How many fresh containers a run's steps will still take, and how many of them soon: the
runner's side of `Engine.prewarm`, told by a subscriber to the run's events.

A step counts when it will take a container from the engine: not when the step cache serves it,
`when.changed` leaves it out, or it mounts cache volumes (only a container's creation can mount
them, so such a step starts a container of its own). The cache is asked with the step's exact key
wherever that can be computed (`ExactCacheKeys`), else its answer is guessed. Of the steps that
count, those that may start soon are the ones whose needs have all started: `soon`. `limit` is
all of them, the most containers the run can still use. Both count the steps with outputs
apart. After fail-fast or an interrupt, all are 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from parapipe.engine.api import Engine
from parapipe.globs import unchanged_reason
from parapipe.graph import needs_within
from parapipe.model import LABEL_PIPELINE, ImagePlan, Pipeline, Prewarm, Status, Step, StepResult
from parapipe.run.events import (
    ContainerWanted,
    ImageFinished,
    RunEvent,
    StepFinished,
    StepScheduled,
    StepsOver,
)
from parapipe.run.state.step_cache import StepCache
from parapipe.run.state.step_data import StepData

CacheHit = Callable[[str], "bool | None"]
"""Whether the step cache holds the step's exact key; None while that key cannot be computed."""

_STOPPED = frozenset({Status.CANCELLED, Status.INTERRUPTED})


def steps_taking_containers(
    pipeline: Pipeline,
    names: Iterable[str],
    *,
    changed_files: frozenset[str] | None,
    read_cache: bool,
    image_built: bool,
    exact_hit: CacheHit | None = None,
) -> list[str]:
    """The steps of `names` that will run in a fresh container, as far as can be told before
    they start.

    A step the cache serves does not count. `exact_hit` tells it from the step's own key where
    that can be computed; elsewhere it is guessed: with a new image, only one whose `inputs`
    narrow its key to some files may be served (a new image changes every other key), else any
    step that has an entry. A prediction that proves wrong costs only speed: that step then
    starts its own container, or one the pool holds for another.
    """
    cache = StepCache(pipeline.state_dir)
    taking = []
    for name in names:
        step = pipeline.steps[name]
        if step.caches or unchanged_reason(step.when_changed, changed_files) is not None:
            continue
        if step.services:  # its own container, on its services' network
            continue
        if read_cache and step.cache:
            hit = exact_hit(name) if exact_hit is not None else None
            if hit is None:  # guessed
                may_serve = step.inputs is not None or not image_built
                hit = may_serve and cache.latest(pipeline.name, name) is not None
            if hit:
                continue
        taking.append(name)
    return taking


class ExactCacheKeys:
    """The key the step runner will look a step up by, as soon as it can be computed: at once
    for a step whose needs hand on no outputs (the key holds the image, the step and its
    secrets), else once those needs have finished (it holds their outputs too)."""

    def __init__(
        self,
        pipeline: Pipeline,
        names: Iterable[str],
        plan: ImagePlan,
        data: StepData,
        fingerprints: Callable[[Step], Mapping[str, str]],
    ) -> None:
        self._pipeline = pipeline
        self._plan = plan
        self._data = data
        self._fingerprints = fingerprints
        self._waiting_for = {
            name: {
                need
                for need in needs
                if pipeline.steps[need].outputs  # a need outside the run brought its own in
            }
            for name, needs in needs_within(pipeline, list(names)).items()
        }

    def finished(self, name: str) -> list[str]:
        """Note that `name` finished; the steps whose key can be computed from now on."""
        ready = []
        for step, waiting in self._waiting_for.items():
            if name in waiting:
                waiting.discard(name)
                if not waiting:
                    ready.append(step)
        return ready

    def hit(self, name: str) -> bool | None:
        if self._waiting_for.get(name):
            return None
        step = self._pipeline.steps[name]
        key = self._data.key(step, self._plan, self._fingerprints(step))
        return self._data.cache.has(key)


class ContainerForecast:
    """Follows the run's steps as they start and finish.

    A step is *next* when all its needs have started (or finished): it may start as soon as
    they end. It may start *soon* when each of its needs has started or is next: two steps
    ahead, as a container takes longer to start than many steps take to run.
    """

    def __init__(
        self,
        template: Prewarm,
        needs: Mapping[str, tuple[str, ...]],
        taking: Iterable[str],
        *,
        with_outputs: Iterable[str] = (),
        keep_going: bool,
    ) -> None:
        self._template = template
        self._keep_going = keep_going
        self._with_outputs = frozenset(with_outputs)
        self._awaiting = set(taking)  # will take a container and have not yet
        self._dependents: dict[str, list[str]] = {name: [] for name in needs}
        for name, step_needs in needs.items():
            for need in step_needs:
                self._dependents[need].append(name)
        self._unstarted_needs = {name: len(step_needs) for name, step_needs in needs.items()}
        self._far_needs = dict(self._unstarted_needs)  # needs neither started nor next
        self._moved: set[str] = set()  # started or finished
        self._next: set[str] = set()
        self._stopped = False
        for name, step_needs in needs.items():
            if not step_needs:
                self._become_next(name)

    def started(self, name: str) -> None:
        if name in self._moved:
            return
        self._moved.add(name)
        for dependent in self._dependents.get(name, ()):
            self._unstarted_needs[dependent] -= 1
            if self._unstarted_needs[dependent] == 0:
                self._become_next(dependent)

    def reconsider(self, name: str, *, taking: bool) -> None:
        """A better prediction for `name`, which has not started: it will take a container, or
        the cache serves it."""
        if name in self._moved:
            return
        if taking:
            self._awaiting.add(name)
        else:
            self._awaiting.discard(name)

    def taken(self, name: str) -> None:
        """`name` is about to ask the engine for its container."""
        self._awaiting.discard(name)

    def finished(self, result: StepResult) -> None:
        self.started(result.name)
        self.taken(result.name)
        status = result.status
        failed = status.failed or status is Status.ERROR
        if status in _STOPPED or (failed and not self._keep_going):
            self._stopped = True  # nothing more starts

    def request(self) -> Prewarm:
        if self._stopped:
            return replace(
                self._template, soon=0, limit=0, soon_with_outputs=0, limit_with_outputs=0
            )
        # Started steps still awaiting their container take one at once.
        soon = {n for n in self._awaiting if n in self._moved or self._far_needs[n] == 0}
        soon_with_outputs = len(soon & self._with_outputs)
        limit_with_outputs = len(self._awaiting & self._with_outputs)
        return replace(
            self._template,
            soon=len(soon) - soon_with_outputs,
            limit=len(self._awaiting) - limit_with_outputs,
            soon_with_outputs=soon_with_outputs,
            limit_with_outputs=limit_with_outputs,
        )

    def _become_next(self, name: str) -> None:
        # A step that starts is next too, if it was not already: it counts once.
        if name in self._next:
            return
        self._next.add(name)
        for dependent in self._dependents.get(name, ()):
            self._far_needs[dependent] -= 1


def forecast_containers(
    pipeline: Pipeline,
    names: list[str],
    template: Prewarm,
    *,
    keep_going: bool,
    changed_files: frozenset[str] | None,
    read_cache: bool,
    image_built: bool,
    exact_hit: CacheHit | None = None,
) -> ContainerForecast:
    """The forecast for a run of `names`, whose containers are made as `template` says."""
    taking = steps_taking_containers(
        pipeline,
        names,
        changed_files=changed_files,
        read_cache=read_cache,
        image_built=image_built,
        exact_hit=exact_hit,
    )
    needs = needs_within(pipeline, names)
    with_outputs = [name for name in names if pipeline.steps[name].outputs]
    return ContainerForecast(
        template, needs, taking, with_outputs=with_outputs, keep_going=keep_going
    )


class PrewarmSubscriber:
    """Tells the engine which containers the steps will want, so it can start them early: from
    the moment the image is ready until no step runs any more."""

    def __init__(
        self,
        engine: Engine,
        pipeline: Pipeline,
        names: list[str],
        *,
        run_id: str,
        jobs: int,
        keep_going: bool,
        changed_files: frozenset[str] | None,
        read_cache: bool,
        data: StepData | None = None,
        fingerprints: Callable[[Step], Mapping[str, str]] = lambda step: {},
    ) -> None:
        """With `data` (the run's step outputs and cache), steps are told apart by their exact
        cache keys; without it, guessed."""
        self._engine = engine
        self._pipeline = pipeline
        self._names = names
        self._run_id = run_id
        self._jobs = jobs
        self._keep_going = keep_going
        self._changed_files = changed_files
        self._read_cache = read_cache
        self._data = data
        self._fingerprints = fingerprints
        self._forecast: ContainerForecast | None = None
        self._keys: ExactCacheKeys | None = None
        self._image_built = False

    def handle(self, event: RunEvent) -> None:
        if isinstance(event, ImageFinished):
            self._start(event)
            return
        forecast = self._forecast
        if forecast is None:
            return
        if isinstance(event, StepScheduled):
            forecast.started(event.name)
            self._engine.prewarm(forecast.request())
        elif isinstance(event, ContainerWanted):
            forecast.taken(event.step)  # an engine's pool counts it off as it takes one
        elif isinstance(event, StepFinished):
            forecast.finished(event.result)
            if self._keys is not None and event.result.status.ok:  # else its dependents skip
                for name in self._keys.finished(event.result.name):
                    forecast.reconsider(name, taking=bool(self._taking([name])))
            self._engine.prewarm(forecast.request())
        elif isinstance(event, StepsOver):
            self._forecast = None  # the engine's session closes: tell it nothing more

    def _start(self, event: ImageFinished) -> None:
        image = event.result
        if image.status is not Status.PASSED or image.image_id is None:
            return
        template = Prewarm(
            run_id=self._run_id,
            image_id=image.image_id,
            workdir=self._pipeline.image.workdir,
            labels={LABEL_PIPELINE: self._pipeline.name},  # as each step's, in `StepRunner`
            jobs=self._jobs,
            soon=0,
            limit=0,
        )
        self._image_built = not image.reused
        if self._data is not None and event.plan is not None:
            self._keys = ExactCacheKeys(
                self._pipeline, self._names, event.plan, self._data, self._fingerprints
            )
        self._forecast = forecast_containers(
            self._pipeline,
            self._names,
            template,
            keep_going=self._keep_going,
            changed_files=self._changed_files,
            read_cache=self._read_cache,
            image_built=self._image_built,
            exact_hit=self._keys.hit if self._keys is not None else None,
        )
        self._engine.prewarm(self._forecast.request())

    def _taking(self, names: list[str]) -> list[str]:
        return steps_taking_containers(
            self._pipeline,
            names,
            changed_files=self._changed_files,
            read_cache=self._read_cache,
            image_built=self._image_built,
            exact_hit=self._keys.hit if self._keys is not None else None,
        )
