"""One run of a pipeline: build the image once, run the selected steps, always clean up."""

from __future__ import annotations

import os
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import anyio
from anyio.abc import TaskStatus

from parapipe.engine.api import CacheVolume, Engine, LineSink, StepRun, cache_volume_name
from parapipe.errors import ImageBuildFailed, OutputError, ParapipeError
from parapipe.globs import unchanged_reason
from parapipe.graph import needs_within, remaining_path_lengths, select_steps
from parapipe.model import (
    LABEL_PIPELINE,
    AttemptResult,
    ImagePlan,
    ImageResult,
    Pipeline,
    Prewarm,
    RunInfo,
    RunResult,
    Status,
    Step,
    StepResult,
)
from parapipe.reporters.base import Reporter
from parapipe.run.image_plan import plan_image
from parapipe.run.left_out_needs import BroughtIn, find_left_out_outputs
from parapipe.run.prewarm import ContainerForecast, forecast_containers
from parapipe.run.scheduler import Scheduler
from parapipe.run.secrets import Secrets, resolve_secrets
from parapipe.run.state.history import load_durations, record_durations
from parapipe.run.state.run_folder import RunFolder
from parapipe.run.state.step_data import StepData

CLEANUP_TIMEOUT = 30.0


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    steps: tuple[str, ...] = ()  # empty: every step
    jobs: int = os.cpu_count() or 1
    keep_going: bool = False
    engine: str = "auto"
    schedule: str = "critical-path"  # or "fifo": ready steps start in the order they got ready
    no_deps: bool = False  # run exactly `steps`, their needs counted as satisfied
    # Files changed, relative to image.source, for `when.changed`; None: unknown, all steps run.
    changed_files: frozenset[str] | None = None
    no_cache: bool = False  # run every step, even one the step cache holds
    export_dir: Path | None = None  # copy every step's outputs here at the end
    # Secret values given on the command line; the host's environment supplies the rest.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    prewarm: bool = True  # let the engine start step containers ahead of the steps


async def run_pipeline(
    pipeline: Pipeline,
    options: RunOptions,
    reporter: Reporter,
    *,
    engine: Engine | None = None,
) -> RunResult:
    """Run `pipeline`. Usage errors are raised before any engine is contacted."""
    names = select_steps(pipeline, options.steps, with_needs=not options.no_deps)
    secrets = resolve_secrets((pipeline.steps[n] for n in names), options.secrets, os.environ)
    brought_in = find_left_out_outputs(pipeline, names) if options.no_deps else {}
    if engine is None:
        from parapipe.engine.registry import choose_engine

        engine, reason = await choose_engine(options.engine)
    else:
        reason = "given by the caller"
    folder = RunFolder.create(pipeline.state_dir)
    run = PipelineRun(
        pipeline,
        names,
        options,
        reporter,
        engine,
        reason,
        folder,
        secrets=secrets,
        brought_in=brought_in,
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
    def __init__(
        self,
        pipeline: Pipeline,
        names: list[str],
        options: RunOptions,
        reporter: Reporter,
        engine: Engine,
        engine_reason: str,
        folder: RunFolder,
        *,
        secrets: Secrets | None = None,
        brought_in: Mapping[str, BroughtIn] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.brought_in = dict(brought_in or {})
        self.secrets = secrets or Secrets()
        self.names = names
        self.options = options
        self.reporter = reporter
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
        self.scheduler = Scheduler(
            needs,
            self._execute_step,
            jobs=options.jobs,
            keep_going=options.keep_going,
            priority=priority,
            on_start=self._step_started,
            on_finish=self._step_finished,
        )
        self._image_scope = anyio.CancelScope()
        self._image_id: str | None = None
        self._plan: ImagePlan | None = None
        self._forecast: ContainerForecast | None = None
        self.data = StepData(pipeline, folder.path, read_cache=not options.no_cache)

    async def execute(self) -> RunResult:
        started_at, started = time.time(), time.monotonic()
        self.reporter.run_started(
            RunInfo(
                run_id=self.folder.run_id,
                pipeline=self.pipeline.name,
                spec_path=self.pipeline.spec_path,
                engine=self.engine.name,
                engine_reason=self.engine_reason,
                steps=self.names,
                needs=needs_within(self.pipeline, self.names),
                jobs=self.options.jobs,
                run_dir=self.folder.path,
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
                await task_group.start(self._watch_signals, task_group.cancel_scope)
                if self._every_step_unchanged():
                    await self.scheduler.run()  # no step needs the image: do not build it
                else:
                    with self._image_scope:
                        image = await self._prepare_image()
                    if image is not None and image.status is Status.PASSED:
                        self._image_id = image.image_id
                        self._forecast_containers(image)
                        await self.scheduler.run()
                task_group.cancel_scope.cancel()
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
        self.reporter.run_finished(result)
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

    async def _watch_signals(
        self, run_scope: anyio.CancelScope, *, task_status: TaskStatus[None]
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.signal is None:
                    self.signal = signum
                    self._image_scope.cancel()
                    self.scheduler.interrupt()
                else:
                    # A second signal: stop waiting for anything; the sweep still runs.
                    run_scope.cancel()

    async def _prepare_image(self) -> ImageResult:
        """Resolve the base, then reuse the image tagged with the content hash or build it."""
        started = time.monotonic()
        tag = f"parapipe/{self.pipeline.name}"
        self.reporter.image_started(tag)
        with self.folder.open_log(self.folder.image_log) as log_file:
            log = self._line_sink(log_file, self.reporter.image_output)
            try:
                base_id = await self.engine.resolve_base(self.pipeline.image, log)
                plan = await anyio.to_thread.run_sync(plan_image, self.pipeline, base_id)
                tag = plan.tag
                self._plan = plan
                image_id = await self.engine.find_image(plan.tag)
                reused = image_id is not None
                if image_id is None:
                    image_id = await self.engine.build_image(plan, log)
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
        self.reporter.image_finished(result)
        return result

    def _step_started(self, name: str) -> None:
        # A step left out as unchanged never starts: it is only reported as it finishes.
        changed = self.options.changed_files
        if unchanged_reason(self.pipeline.steps[name].when_changed, changed) is None:
            self.reporter.step_started(name)
        if self._forecast is not None:
            self._forecast.started(name)
            self.engine.prewarm(self._forecast.request())

    def _forecast_containers(self, image: ImageResult) -> None:
        """Tell the engine which containers the steps will want, so it can start them early."""
        if not self.options.prewarm or image.image_id is None:
            return
        template = Prewarm(
            run_id=self.folder.run_id,
            image_id=image.image_id,
            workdir=self.pipeline.image.workdir,
            labels={LABEL_PIPELINE: self.pipeline.name},  # as each step's, in `_attempt`
            jobs=self.options.jobs,
            soon=0,
            limit=0,
        )
        self._forecast = forecast_containers(
            self.pipeline,
            self.names,
            template,
            keep_going=self.options.keep_going,
            changed_files=self.options.changed_files,
            read_cache=not self.options.no_cache,
            image_built=not image.reused,
        )
        self.engine.prewarm(self._forecast.request())

    def _every_step_unchanged(self) -> bool:
        changed = self.options.changed_files
        steps = self.pipeline.steps
        # A step with outputs may have to run after all, when the cache does not hold them.
        return all(
            unchanged_reason(steps[n].when_changed, changed) and not steps[n].outputs
            for n in self.names
        )

    async def _execute_step(self, name: str) -> StepResult:
        step = self.pipeline.steps[name]
        unchanged = unchanged_reason(step.when_changed, self.options.changed_files)
        if unchanged is not None and not step.outputs:
            return StepResult(name=name, status=Status.UNCHANGED, reason=unchanged)
        log_path = self.folder.step_log(name)
        assert self._plan is not None
        key = await anyio.to_thread.run_sync(
            self.data.key, step, self._plan, self._secret_fingerprints(step)
        )
        note = ""
        if unchanged is not None:
            # Its dependents need its outputs: the cache has them, or it runs after all.
            entry = self.data.cached(step, key) or self.data.latest(step)
            if entry is not None:
                self.data.restore(step, entry, log_path)
                reason = f"{unchanged}; its outputs come from the step cache"
                return StepResult(name=name, status=Status.UNCHANGED, reason=reason)
            self.reporter.step_started(name)
            note = f"parapipe: {unchanged}, but no outputs of it are cached: running it"
        entry = self.data.cached(step, key)
        if entry is not None:
            self.data.restore(step, entry, log_path)
            with self.folder.open_log(log_path) as log_file:
                log_file.write(f"parapipe: cached: not run again (key {key[:12]})\n")
            reason = f"passed in an earlier run in {format_seconds(round(entry.duration, 1))}"
            return StepResult(
                name=name, status=Status.CACHED, log_path=log_path, duration=0.0, reason=reason
            )
        notes = [*self._brought_in_notes(step), *([note] if note else [])]
        result = await self._run_attempts(step, log_path, notes)
        if result.status is Status.PASSED:
            await anyio.to_thread.run_sync(
                self.data.remember, step, key, result.duration or 0.0, log_path
            )
        return result

    def _brought_in_notes(self, step: Step) -> list[str]:
        return [
            f"parapipe: the outputs of {need!r} come from {self.brought_in[need].origin}"
            for need in step.needs
            if need in self.brought_in
        ]

    def _secret_fingerprints(self, step: Step) -> dict[str, str]:
        return self.secrets.fingerprints(step)

    async def _run_attempts(self, step: Step, log_path: Path, notes: list[str]) -> StepResult:
        name = step.name
        max_attempts = 1 + step.retries
        attempts: list[AttemptResult] = []
        with self.folder.open_log(log_path) as log_file:
            log = self._line_sink(log_file, lambda line: self.reporter.step_output(name, line))
            for note in notes:
                log(note)
            for number in range(1, max_attempts + 1):
                if max_attempts > 1:
                    log(f"parapipe: attempt {number}/{max_attempts}")
                attempts.append(await self._attempt(step, number, log))
                if number == max_attempts or not _worth_retrying(step, attempts[-1]):
                    break
                log(f"parapipe: attempt {number} {attempts[-1].status.value}; retrying")
        return _step_result(step, attempts, max_attempts, log_path)

    async def _attempt(self, step: Step, number: int, log: LineSink) -> AttemptResult:
        """One attempt in a fresh container, killed when the step's timeout expires."""
        assert self._image_id is not None
        secrets = self.secrets.for_step(step)
        run = StepRun(
            run_id=self.folder.run_id,
            step=step.name,
            image_id=self._image_id,
            commands=step.run,
            env={
                # A secret takes the place of a variable of the same name.
                **{name: value for name, value in step.env.items() if name not in secrets},
                "PARAPIPE_RUN_ID": self.folder.run_id,
                "PARAPIPE_STEP": step.name,
                "PARAPIPE_ATTEMPT": str(number),
            },
            workdir=self.pipeline.image.workdir,
            labels={LABEL_PIPELINE: self.pipeline.name},
            attempt=number,
            inputs=tuple(self.data.received(step).values()),
            outputs=step.outputs,
            outputs_dir=self.data.outputs_dir(step.name) if step.outputs else None,
            secrets=secrets,
            caches=self._cache_volumes(step),
        )
        if step.outputs:
            # What an earlier, failed attempt left must not pass for this one's outputs.
            shutil.rmtree(self.data.outputs_dir(step.name), ignore_errors=True)
        started_at, started = time.time(), time.monotonic()
        exit_code: int | None = None
        if self._forecast is not None:
            self._forecast.taken(step.name)  # an engine's pool counts it off as it takes one
        try:
            with anyio.move_on_after(step.timeout) as deadline:
                exit_code = await self.engine.run_step(run, log)
        except OutputError as exc:
            log(f"parapipe: {exc}")
            return AttemptResult(
                number=number,
                status=Status.FAILED,
                exit_code=None,
                started_at=started_at,
                duration=time.monotonic() - started,
                reason=str(exc),
            )
        except ParapipeError as exc:
            reason = self.secrets.redact(str(exc))
            log(f"parapipe: {reason}")
            return AttemptResult(
                number=number,
                status=Status.ERROR,
                exit_code=None,
                started_at=started_at,
                duration=time.monotonic() - started,
                reason=reason,
            )
        if deadline.cancelled_caught:
            log(f"parapipe: timed out after {format_seconds(step.timeout)}; container killed")
            status = Status.TIMED_OUT
        else:
            status = Status.PASSED if exit_code == 0 else Status.FAILED
        return AttemptResult(
            number=number,
            status=status,
            exit_code=exit_code,
            started_at=started_at,
            duration=time.monotonic() - started,
        )

    def _cache_volumes(self, step: Step) -> tuple[CacheVolume, ...]:
        pipeline = self.pipeline.name
        return tuple(
            CacheVolume(
                name=cache_volume_name(pipeline, cache), pipeline=pipeline, cache=cache, path=path
            )
            for cache, path in step.caches.items()
        )

    def _step_finished(self, result: StepResult) -> None:
        log_path = self.folder.step_log(result.name)
        if log_path.exists():
            with self.folder.open_log(log_path) as log_file:
                took = f" after {result.duration:.2f}s" if result.duration is not None else ""
                why = f": {result.reason}" if result.reason else ""
                log_file.write(f"parapipe: {result.status.value}{took}{why}\n")
        self.reporter.step_finished(self._with_log(result))
        if self._forecast is not None:
            self._forecast.finished(result)
            self.engine.prewarm(self._forecast.request())

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
                self.reporter.step_finished(results[name])
        return results

    def _line_sink(self, log_file: TextIO, show: Callable[[str], None]) -> LineSink:
        """Where output goes: the log file, then the reporters, with every secret masked."""
        redact = self.secrets.redact

        def sink(line: str) -> None:
            line = redact(line)
            log_file.write(line + "\n")
            show(line)

        return sink


def _worth_retrying(step: Step, attempt: AttemptResult) -> bool:
    # An engine error is not the step's flakiness: retrying it would only hide a broken engine.
    if attempt.status is Status.TIMED_OUT:
        return step.retry_on_timeout
    if attempt.status is Status.FAILED:
        return step.retry_on is None or attempt.exit_code in step.retry_on
    return False


def _step_result(
    step: Step, attempts: list[AttemptResult], max_attempts: int, log_path: Path
) -> StepResult:
    last = attempts[-1]
    if last.status is Status.ERROR:
        reason = last.reason
    elif last.status is Status.TIMED_OUT:
        reason = f"timed out after {format_seconds(step.timeout)}"
    elif last.status is Status.FAILED:
        reason = last.reason or f"exit code {last.exit_code}"
    else:
        reason = ""
    if max_attempts > 1 and (last.status is not Status.PASSED or last.number > 1):
        on_attempt = f"on attempt {last.number}/{max_attempts}"
        reason = f"{reason} {on_attempt}" if reason else f"passed {on_attempt}"
    status = last.status
    if status.failed and step.allow_failure:
        status = Status.ALLOWED_FAILURE
    return StepResult(
        name=step.name,
        status=status,
        exit_code=last.exit_code,
        started_at=attempts[0].started_at,
        duration=sum(a.duration for a in attempts),
        log_path=log_path,
        reason=reason,
        attempts=tuple(attempts),
        max_attempts=max_attempts,
    )


def format_seconds(seconds: float | None) -> str:
    """`90s`, `10m`, `1h30m`, `0.5s`: how a timeout reads in a log line."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{rest}s" if rest else "")
