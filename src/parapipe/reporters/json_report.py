"""`--report PATH`: the run as JSON, for scripts and dashboards.

The layout is documented by the JSON Schema in `docs/report-schema.json`; `schema_version`
changes only when a field is removed or changes meaning (new fields may appear any time).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parapipe import __version__
from parapipe.model import (
    AttemptResult,
    ImageResult,
    RunInfo,
    RunResult,
    Status,
    StepResult,
    label_values,
    split_instance,
)
from parapipe.reporters.base import Reporter
from parapipe.reporters.report_file import write_report
from parapipe.reporters.summary import ordered_steps

FLAG = "--report"
SCHEMA_VERSION = 1


class JsonReporter(Reporter):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._info: RunInfo | None = None

    def run_started(self, info: RunInfo) -> None:
        self._info = info

    def run_finished(self, result: RunResult) -> None:
        text = json.dumps(report_record(result, self._info), indent=2, ensure_ascii=False)
        write_report(self.path, text + "\n", FLAG)


def report_record(result: RunResult, info: RunInfo | None = None) -> dict[str, Any]:
    order: Sequence[str] = info.steps if info is not None else ()
    needs: Mapping[str, tuple[str, ...]] = info.needs if info is not None else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "parapipe_version": __version__,
        "run_id": result.run_id,
        "pipeline": result.pipeline,
        "spec": str(info.spec_path) if info is not None else None,
        "engine": result.engine,
        "jobs": info.jobs if info is not None else None,
        "started_at": _timestamp(result.started_at),
        "duration": round(result.duration, 3),
        "exit_code": int(result.exit_code),
        "interrupted_by": _signal_name(result.signal),
        "run_dir": str(result.run_dir),
        "image": _image(result.image),
        "steps": [_step(step, needs.get(step.name, ())) for step in ordered_steps(result, order)],
    }


def _image(image: ImageResult | None) -> dict[str, Any] | None:
    if image is None:
        return None  # not needed: every step was left out as unchanged
    return {
        "tag": image.tag,
        "id": image.image_id,
        "status": _status(image.status),
        "reused": image.reused,
        "duration": _round(image.duration),
        "log": _path(image.log_path),
        "reason": image.reason,
    }


def _step(step: StepResult, needs: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": _status(step.status),
        "status_text": step.status.value,
        "ok": step.status.ok,
        "exit_code": step.exit_code,
        "reason": step.reason,
        "needs": list(needs),
        "started_at": _timestamp(step.started_at),
        "finished_at": _timestamp(_finished_at(step)),
        "duration": _round(step.duration),
        "cache": _cache(step),
        "attempts": len(step.attempts) or (1 if step.started_at is not None else 0),
        "max_attempts": step.max_attempts,
        "attempt_results": [_attempt(a) for a in step.attempts],
        "log": _path(step.log_path),
        "matrix": _matrix(step.name),
    }


def _matrix(name: str) -> dict[str, Any] | None:
    """For an instance of a matrix step: its step and values; null for any other step."""
    instance = split_instance(name)
    if instance is None:
        return None
    return {"step": instance[0], "values": label_values(instance[1])}


def _cache(step: StepResult) -> str | None:
    """`hit`: restored from the step cache; `miss`: it ran; null: it did not get that far."""
    if step.status is Status.CACHED:
        return "hit"
    return "miss" if step.started_at is not None else None


def _attempt(attempt: AttemptResult) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "status": _status(attempt.status),
        "exit_code": attempt.exit_code,
        "started_at": _timestamp(attempt.started_at),
        "duration": round(attempt.duration, 3),
        "reason": attempt.reason,
    }


def _finished_at(step: StepResult) -> float | None:
    if step.attempts:
        last = step.attempts[-1]
        return last.started_at + last.duration
    if step.started_at is None or step.duration is None:
        return None
    return step.started_at + step.duration


def _status(status: Status) -> str:
    return status.name.lower()


def _timestamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _signal_name(signum: int | None) -> str | None:
    if signum is None:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
