"""One step of a run: served by the step cache, or run in attempts, each in a fresh container
with its timeout, its output logged and shown with every secret masked."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TextIO

import anyio

from parapipe.engine.api import (
    CacheVolume,
    Engine,
    LineSink,
    ServiceRun,
    StepRun,
    cache_volume_name,
)
from parapipe.errors import OutputError, ParapipeError, ServiceFailed
from parapipe.model import (
    LABEL_PIPELINE,
    AttemptResult,
    ImagePlan,
    Pipeline,
    Status,
    Step,
    StepResult,
)
from parapipe.run.events import ContainerWanted, RunEvent, StepOutput, StepStarted
from parapipe.run.left_out_needs import BroughtIn
from parapipe.run.secrets import Secrets
from parapipe.run.services import StepServices
from parapipe.run.state.run_folder import RunFolder
from parapipe.run.state.step_data import StepData

Publish = Callable[[RunEvent], None]


class StepRunner:
    """Runs the steps the scheduler hands it, once `use_image` gave it the pipeline image."""

    def __init__(
        self,
        pipeline: Pipeline,
        engine: Engine,
        folder: RunFolder,
        data: StepData,
        publish: Publish,
        *,
        unchanged: Mapping[str, str],
        secrets: Secrets,
        brought_in: Mapping[str, BroughtIn],
        keep_failed: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.engine = engine
        self.folder = folder
        self.data = data
        self.publish = publish
        self.unchanged = unchanged  # why `when.changed` leaves a step out, by step
        self.secrets = secrets
        self.brought_in = brought_in
        self.keep_failed = keep_failed  # `run -i`
        self._image_id: str | None = None
        self._plan: ImagePlan | None = None
        self.services = StepServices(pipeline, engine, folder, secrets)

    def use_image(self, image_id: str, plan: ImagePlan) -> None:
        self._image_id, self._plan = image_id, plan

    async def run(self, name: str) -> StepResult:
        step = self.pipeline.steps[name]
        unchanged = self.unchanged.get(name)
        if unchanged is not None and not step.outputs:
            return StepResult(name=name, status=Status.UNCHANGED, reason=unchanged)
        log_path = self.folder.step_log(name)
        collision = await anyio.to_thread.run_sync(self.data.collision, step)
        if collision is not None:
            with self.folder.open_log(log_path) as log_file:
                log_file.write(f"parapipe: {collision}\n")
            failed = Status.ALLOWED_FAILURE if step.allow_failure else Status.FAILED
            return StepResult(name=name, status=failed, log_path=log_path, reason=collision)
        assert self._plan is not None
        assert self._image_id is not None
        try:
            service_images = await self.services.image_ids(step, self._image_id)
        except ParapipeError as exc:
            with self.folder.open_log(log_path) as log_file:
                log_file.write(f"parapipe: {exc}\n")
            return StepResult(name=name, status=Status.ERROR, log_path=log_path, reason=str(exc))
        services = self.services.key_parts(step, service_images)
        key = await anyio.to_thread.run_sync(
            partial(
                self.data.key, step, self._plan, self.secrets.fingerprints(step), services=services
            )
        )
        note = ""
        if unchanged is not None:
            # Its dependents need its outputs: the cache has them, or it runs after all.
            entry = self.data.cached(step, key) or self.data.latest(step)
            if entry is not None:
                self.data.restore(step, entry, log_path)
                reason = f"{unchanged}; its outputs come from the step cache"
                return StepResult(name=name, status=Status.UNCHANGED, reason=reason)
            self.publish(StepStarted(name=name))
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
        with self.services.runs(step, service_images) as service_runs:
            result = await self._run_attempts(step, log_path, notes, service_runs)
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

    async def _run_attempts(
        self, step: Step, log_path: Path, notes: list[str], services: tuple[ServiceRun, ...]
    ) -> StepResult:
        name = step.name
        max_attempts = 1 + step.retries
        attempts: list[AttemptResult] = []
        with self.folder.open_log(log_path) as log_file:
            log = line_sink(
                log_file, self.secrets, lambda line: self.publish(StepOutput(name=name, line=line))
            )
            for note in notes:
                log(note)
            for number in range(1, max_attempts + 1):
                if max_attempts > 1:
                    log(f"parapipe: attempt {number}/{max_attempts}")
                attempts.append(await self._attempt(step, number, log, services))
                if number == max_attempts or not _worth_retrying(step, attempts[-1]):
                    break
                log(f"parapipe: attempt {number} {attempts[-1].status.value}; retrying")
        return _step_result(step, attempts, max_attempts, log_path)

    async def _attempt(
        self, step: Step, number: int, log: LineSink, services: tuple[ServiceRun, ...] = ()
    ) -> AttemptResult:
        """One attempt in a fresh container (with fresh services), killed when the step's
        timeout expires."""
        run = self._step_run(step, number, services)
        if step.outputs:
            # What an earlier, failed attempt left must not pass for this one's outputs.
            shutil.rmtree(self.data.outputs_dir(step.name), ignore_errors=True)
        started_at, started = time.time(), time.monotonic()
        exit_code: int | None = None
        self.publish(ContainerWanted(step=step.name, attempt=number))
        try:
            with anyio.move_on_after(step.timeout) as deadline:
                exit_code = await self.engine.run_step(run, log)
        except (OutputError, ServiceFailed) as exc:
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

    def _step_run(self, step: Step, number: int, services: tuple[ServiceRun, ...] = ()) -> StepRun:
        assert self._image_id is not None
        secrets = self.secrets.for_step(step)
        return StepRun(
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
            labels={LABEL_PIPELINE: self.pipeline.name},  # as the prewarm's containers'
            attempt=number,
            inputs=tuple(self.data.received(step).values()),
            outputs=step.outputs,
            outputs_dir=self.data.outputs_dir(step.name) if step.outputs else None,
            secrets=secrets,
            caches=self._cache_volumes(step),
            keep_failed=self.keep_failed,
            services=services,
        )

    def _cache_volumes(self, step: Step) -> tuple[CacheVolume, ...]:
        pipeline = self.pipeline.name
        return tuple(
            CacheVolume(
                name=cache_volume_name(pipeline, cache), pipeline=pipeline, cache=cache, path=path
            )
            for cache, path in step.caches.items()
        )


def line_sink(log_file: TextIO, secrets: Secrets, show: Callable[[str], None]) -> LineSink:
    """Where output goes: the log file, then the subscribers, with every secret masked."""
    redact = secrets.redact

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
