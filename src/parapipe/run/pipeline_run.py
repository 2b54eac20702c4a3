"""One run of a pipeline: build the image once, run the selected steps, always clean up; the
run loop, which publishes what happens to the run's subscribers (`run.events`)."""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from parapipe.engine.api import Engine, RemovedImages
from parapipe.errors import ImageBuildFailed, ParapipeError
from parapipe.globs import unchanged_reason
from parapipe.graph import needs_within, remaining_path_lengths, select_steps
from parapipe.model import ImagePlan, ImageResult, Pipeline, RunInfo, RunResult, Status, StepResult
from parapipe.run import source_delta
from parapipe.run.control import RunControl
from parapipe.run.events import (
    EventStream,
    ImageFinished,
    ImageOutput,
    ImageStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepScheduled,
    StepsOver,
    StepStarted,
    Subscriber,
)
from parapipe.run.image_plan import (
    SourceListing,
    SourceManifest,
    check_prepare_files,
    list_source,
    plan_image_and_source,
    remembered_plan,
)
from parapipe.run.left_out_needs import BroughtIn, find_left_out_outputs
from parapipe.run.prewarm import PrewarmSubscriber
from parapipe.run.scheduler import Scheduler
from parapipe.run.secrets import Secrets, resolve_secrets
from parapipe.run.state.history import load_durations, record_durations
from parapipe.run.state.run_folder import RunFolder
from parapipe.run.state.step_data import StepData
from parapipe.run.step_runner import StepRunner, line_sink

CLEANUP_TIMEOUT = 30.0


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    steps: tuple[str, ...] = ()  # empty: every step
    jobs: int = os.cpu_count() or 1
    keep_going: bool = False
    schedule: str = "critical-path"  # or "fifo": ready steps start in the order they got ready
    no_deps: bool = False  # run exactly `steps`, their needs counted as satisfied
    # Files changed, relative to image.source, for `when.changed`; None: unknown, all steps run.
    changed_files: frozenset[str] | None = None
    no_cache: bool = False  # run every step, even one the step cache holds
    export_dir: Path | None = None  # copy every step's outputs here at the end
    # Secret values given on the command line; the host's environment supplies the rest.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    prewarm: bool = True  # let the engine start step containers ahead of the steps
    keep_failed: bool = False  # `run -i`: keep a failed step's filesystem for a shell


@dataclass(frozen=True, kw_only=True)
class RunSelection:
    """What a run takes from the spec and the command line, checked before any engine is
    contacted: the steps, their secrets, and the outputs brought in for left-out needs."""

    names: list[str]
    secrets: Secrets
    brought_in: Mapping[str, BroughtIn]


def select_run(pipeline: Pipeline, options: RunOptions) -> RunSelection:
    """Raise the run's usage errors; the caller does so before it chooses an engine."""
    names = select_steps(pipeline, options.steps, with_needs=not options.no_deps)
    check_prepare_files(pipeline)
    steps = [pipeline.steps[n] for n in names]
    services = {s: pipeline.services[s] for step in steps for s in step.services}
    secrets = resolve_secrets([*steps, *services.values()], options.secrets, os.environ)
    brought_in = find_left_out_outputs(pipeline, names) if options.no_deps else {}
    return RunSelection(names=names, secrets=secrets, brought_in=brought_in)


async def run_pipeline(
    pipeline: Pipeline,
    options: RunOptions,
    subscribers: Sequence[Subscriber],
    *,
    engine: Engine,
    engine_reason: str = "given by the caller",
    selection: RunSelection | None = None,
    control: RunControl | None = None,
    listing: Future[SourceListing] | None = None,
) -> RunResult:
    """Run `pipeline` on `engine`, publishing its events to `subscribers` (and to the prewarm,
    unless `options.prewarm` is off). Usage errors are raised before `engine` is used. With a
    `control`, its caller stops the run and owns the signals (see `run.control`); `listing`,
    from `image_plan.list_source_soon`, is the image's files listed while the caller started."""
    selection = selection or select_run(pipeline, options)
    secrets = selection.secrets
    folder = RunFolder.create(pipeline.state_dir)
    if options.prewarm:
        prewarm = PrewarmSubscriber(
            engine,
            pipeline,
            selection.names,
            run_id=folder.run_id,
            jobs=options.jobs,
            keep_going=options.keep_going,
            changed_files=options.changed_files,
            read_cache=not options.no_cache,
            data=StepData(pipeline, folder.path, read_cache=not options.no_cache),
            fingerprints=secrets.fingerprints,
        )
        subscribers = [*subscribers, prewarm]  # after the reporters, as each step is shown
    run = PipelineRun(
        pipeline,
        selection.names,
        options,
        EventStream(subscribers),
        engine,
        engine_reason,
        folder,
        secrets=secrets,
        brought_in=selection.brought_in,
        control=control,
        listing=listing,
    )
    try:
        return await run.execute()
    except ParapipeError:
        raise
    except Exception as exc:
        folder.traceback_log.write_text(secrets.redact(traceback.format_exc()))
        raise ParapipeError(
            secrets.redact(f"internal error: {exc!r} (traceback in {folder.traceback_log})")
        ) from exc


class PipelineRun:
    """The run loop: the image, then the scheduler over the steps, then the sweep, publishing
    what happens as it goes."""

    def __init__(
        self,
        pipeline: Pipeline,
        names: list[str],
        options: RunOptions,
        events: EventStream,
        engine: Engine,
        engine_reason: str,
        folder: RunFolder,
        *,
        secrets: Secrets | None = None,
        brought_in: Mapping[str, BroughtIn] | None = None,
        control: RunControl | None = None,
        listing: Future[SourceListing] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.control = control
        self.listing = listing  # the image's files, listed by the caller ahead of the run
        self.brought_in = dict(brought_in or {})
        self.secrets = secrets or Secrets()
        self.names = names
        self.options = options
        self.publish = events.publish
        self.engine = engine
        self.engine_reason = engine_reason
        self.folder = folder
        self.signal: int | None = None
        needs = needs_within(pipeline, names)
        priority: dict[str, float] = {}
        if options.schedule == "critical-path":
            # Of the steps that are ready, start first the one with the longest way to go.
            durations = load_durations(pipeline.state_dir, pipeline.name)
            priority = {
                n: -length for n, length in remaining_path_lengths(needs, durations).items()
            }
        self.data = StepData(pipeline, folder.path, read_cache=not options.no_cache)
        self.unchanged = _unchanged_steps(pipeline, names, options.changed_files)
        self.steps = StepRunner(
            pipeline,
            engine,
            folder,
            self.data,
            self.publish,
            unchanged=self.unchanged,
            secrets=self.secrets,
            brought_in=self.brought_in,
            keep_failed=options.keep_failed,
        )
        self.scheduler = Scheduler(
            needs,
            self.steps.run,
            jobs=options.jobs,
            keep_going=options.keep_going,
            priority=priority,
            on_start=self._step_started,
            on_finish=self._step_finished,
        )
        self._image_scope = anyio.CancelScope()
        self._run_scope = anyio.CancelScope()

    async def execute(self) -> RunResult:
        started_at, started = time.time(), time.monotonic()
        self.publish(
            RunStarted(
                info=RunInfo(
                    run_id=self.folder.run_id,
                    pipeline=self.pipeline.name,
                    spec_path=self.pipeline.spec_path,
                    engine=self.engine.name,
                    engine_reason=self.engine_reason,
                    engine_address=self.engine.address(),
                    steps=self.names,
                    needs=needs_within(self.pipeline, self.names),
                    jobs=self.options.jobs,
                    run_dir=self.folder.path,
                )
            )
        )
        image: ImageResult | None = None
        for brought in self.brought_in.values():
            await anyio.to_thread.run_sync(self.data.take_in, brought.need, brought.outputs)
        try:
            async with (
                self.engine.session(self.folder.path),
                anyio.create_task_group() as task_group,
            ):
                try:
                    self._run_scope = task_group.cancel_scope
                    if self.control is None:
                        await task_group.start(self._watch_signals)
                    else:
                        self.control.attach(self)
                    if self._every_step_unchanged():
                        await self.scheduler.run()  # no step needs the image: do not build it
                    else:
                        with self._image_scope:
                            image = await self._prepare_image()
                        if image is not None and image.status is Status.PASSED:
                            async with anyio.create_task_group() as housekeeping:
                                if not image.reused:
                                    housekeeping.start_soon(self._remove_old_images, image)
                                await self.scheduler.run()
                    task_group.cancel_scope.cancel()
                finally:
                    self.publish(StepsOver())
        finally:
            cleanup_error = await self._sweep()
        result = RunResult(
            run_id=self.folder.run_id,
            pipeline=self.pipeline.name,
            engine=self.engine.name,
            run_dir=self.folder.path,
            started_at=started_at,
            duration=time.monotonic() - started,
            image=image,
            steps=self._final_results(image),
            signal=self.signal,
            cleanup_error=cleanup_error,
        )
        if self.options.export_dir is not None:
            self.data.export(self.names, self.options.export_dir)
        record_durations(self.pipeline.state_dir, self.pipeline.name, result.steps)
        self.publish(RunFinished(result=result))
        return result

    async def _sweep(self) -> str:
        """Remove whatever container of this run is left; say why if that is impossible."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT) as deadline:
            try:
                await self.engine.remove_containers(self.folder.run_id)
            except ParapipeError as exc:
                return str(exc)
        if deadline.cancelled_caught:
            return (
                f"{self.engine.name}: removing the run's containers took over {CLEANUP_TIMEOUT:g}s"
            )
        return ""

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        # SIGHUP: the terminal was closed under the run, which must not leave its containers.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if self.signal is None:
                    self.interrupt(signum)
                else:
                    self.abandon()  # a second signal

    def interrupt(self, signum: int | None) -> None:
        """Stop the image build and the running steps, start no more; `signum` (None: not a
        signal, the caller's own stop) becomes the run's signal."""
        if self.signal is None:
            self.signal = signum
        self._image_scope.cancel()
        self.scheduler.interrupt()

    def abandon(self) -> None:
        """Stop waiting for anything; the sweep still runs."""
        self._run_scope.cancel()

    async def _prepare_image(self) -> ImageResult:
        """Resolve the base, then reuse the image tagged with the content hash or build it."""
        started = time.monotonic()
        tag = f"parapipe/{self.pipeline.name}"
        ready_plan: ImagePlan | None = None
        self.publish(ImageStarted(tag=tag))
        with self.folder.open_log(self.folder.image_log) as log_file:
            log = line_sink(
                log_file, self.secrets, lambda line: self.publish(ImageOutput(line=line))
            )
            try:
                base_id = await self.engine.resolve_base(self.pipeline.image, log)
                plan, found = await self._planned(base_id)
                tag = plan.tag
                reused = isinstance(found, str)
                if isinstance(found, str):
                    image_id = found
                else:
                    image_id = await source_delta.build_image(
                        self.engine, plan, found, self.pipeline.state_dir, log
                    )
                self.steps.use_image(image_id, plan)
                ready_plan = plan
                result = ImageResult(
                    tag=tag,
                    status=Status.PASSED,
                    image_id=image_id,
                    reused=reused,
                    duration=time.monotonic() - started,
                    log_path=self.folder.image_log,
                )
            except ImageBuildFailed as exc:
                reason = self.secrets.redact(str(exc))
                log_file.write(f"parapipe: {reason}\n")
                result = ImageResult(
                    tag=tag,
                    status=Status.FAILED,
                    duration=time.monotonic() - started,
                    log_path=self.folder.image_log,
                    reason=reason,
                )
        self.publish(ImageFinished(result=result, plan=ready_plan))
        return result

    async def _planned(self, base_id: str) -> tuple[ImagePlan, str | SourceManifest]:
        """The image's plan, with the id of its image when the engine has it, else with what
        building it needs. An unchanged source names its image from the last run's plan and
        reads no file."""
        if self.listing is not None:  # started by the caller: taken once
            listing = await anyio.to_thread.run_sync(self.listing.result)
            self.listing = None
        else:
            listing = await anyio.to_thread.run_sync(list_source, self.pipeline)
        remembered = await anyio.to_thread.run_sync(
            remembered_plan, self.pipeline, base_id, listing
        )
        if remembered is not None:
            image_id = await self.engine.find_image(remembered.tag)
            if image_id is not None:
                return remembered, image_id
        plan, manifest = await anyio.to_thread.run_sync(
            plan_image_and_source, self.pipeline, base_id, listing
        )
        image_id = await self.engine.find_image(plan.tag)
        return plan, manifest if image_id is None else image_id

    async def _remove_old_images(self, image: ImageResult) -> None:
        """A build made a new image: the pipeline's old ones go (`image.keep`), while the steps
        run. What went, or why not, goes to the image log; the run goes on either way."""
        keep_ids = frozenset({image.image_id}) if image.image_id else frozenset()
        try:
            removed = await self.engine.remove_old_images(
                self.pipeline.name, keep=self.pipeline.image.keep, keep_ids=keep_ids
            )
        except ParapipeError as exc:
            removed = RemovedImages(problem=str(exc))
        with self.folder.open_log(self.folder.image_log) as log:
            for reference in removed.removed:
                log.write(f"parapipe: removed the old image {reference}\n")
            if removed.problem:
                log.write(f"parapipe: {self.secrets.redact(removed.problem)}\n")

    def _step_started(self, name: str) -> None:
        # A step left out as unchanged never starts: it is only reported as it finishes.
        if name not in self.unchanged:
            self.publish(StepStarted(name=name))
        self.publish(StepScheduled(name=name))

    def _every_step_unchanged(self) -> bool:
        steps = self.pipeline.steps
        # A step with outputs may have to run after all, when the cache does not hold them.
        return all(n in self.unchanged and not steps[n].outputs for n in self.names)

    def _step_finished(self, result: StepResult) -> None:
        log_path = self.folder.step_log(result.name)
        if log_path.exists():
            with self.folder.open_log(log_path) as log_file:
                took = f" after {result.duration:.2f}s" if result.duration is not None else ""
                why = f": {result.reason}" if result.reason else ""
                log_file.write(f"parapipe: {result.status.value}{took}{why}\n")
        self.publish(StepFinished(result=self._with_log(result)))

    def _with_log(self, result: StepResult) -> StepResult:
        if result.log_path is None and self.folder.step_log(result.name).exists():
            return replace(result, log_path=self.folder.step_log(result.name))
        return result

    def _final_results(self, image: ImageResult | None) -> dict[str, StepResult]:
        done = self.scheduler.results
        results: dict[str, StepResult] = {}
        for name in self.names:
            if name in done:
                results[name] = self._with_log(done[name])
            elif image is not None and image.status is Status.FAILED:
                results[name] = StepResult(
                    name=name, status=Status.SKIPPED, reason="the pipeline image failed to build"
                )
            else:
                results[name] = StepResult(
                    name=name, status=Status.INTERRUPTED, reason="not started: interrupted"
                )
            if name not in done:
                self.publish(StepFinished(result=results[name]))
        return results


def _unchanged_steps(
    pipeline: Pipeline, names: list[str], changed_files: frozenset[str] | None
) -> dict[str, str]:
    """Why `when.changed` leaves a step out, for each step of `names` it leaves out."""
    reasons = {n: unchanged_reason(pipeline.steps[n].when_changed, changed_files) for n in names}
    return {name: reason for name, reason in reasons.items() if reason is not None}
