"""What happened in a run. Reporters read these; they never decide anything."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from parapipe.errors import ExitCode


class Status(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PASSED = "passed"
    CACHED = "cached"  # an earlier identical run passed; its log and outputs were restored
    UNCHANGED = "skipped (no matching change)"  # `when.changed` matched nothing; counts as passed
    FAILED = "failed"
    TIMED_OUT = "timed out"  # a failure: its container was killed at `timeout`
    ALLOWED_FAILURE = "failed (allowed)"  # `allow_failure: true`; the run still passes
    SKIPPED = "skipped"  # a need did not pass, or the image could not be built
    CANCELLED = "cancelled"  # stopped by fail-fast after another step failed
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C / SIGTERM
    ERROR = "error"  # the engine failed, not the step's commands

    @property
    def finished(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)

    @property
    def ok(self) -> bool:
        """The step's dependents may run."""
        return self in (Status.PASSED, Status.CACHED, Status.UNCHANGED)

    @property
    def failed(self) -> bool:
        """The step's own commands failed (an allowed failure does not count)."""
        return self in (Status.FAILED, Status.TIMED_OUT)


@dataclass(frozen=True, kw_only=True)
class AttemptResult:
    """One attempt of a step, in its own fresh container."""

    number: int  # from 1
    status: Status  # PASSED, FAILED, TIMED_OUT or ERROR
    exit_code: int | None
    started_at: float  # time.time()
    duration: float
    reason: str = ""  # the engine's error, for ERROR


@dataclass(frozen=True, kw_only=True)
class StepResult:
    name: str
    status: Status
    exit_code: int | None = None
    started_at: float | None = None  # time.time() when its container started
    duration: float | None = None  # seconds
    log_path: Path | None = None
    reason: str = ""  # why it was skipped, cancelled or errored; the failing command's exit
    attempts: tuple[AttemptResult, ...] = ()  # every attempt that ran, in order
    max_attempts: int = 1  # 1 + the step's `retries`


@dataclass(frozen=True, kw_only=True)
class ImageResult:
    tag: str
    status: Status  # PASSED (built or reused) or FAILED
    image_id: str | None = None
    reused: bool = False  # the tag already existed: nothing was built
    duration: float | None = None
    log_path: Path | None = None
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class RunResult:
    run_id: str
    pipeline: str
    engine: str
    run_dir: Path
    started_at: float
    duration: float
    image: ImageResult | None
    steps: Mapping[str, StepResult] = field(default_factory=dict)
    signal: int | None = None  # the signal that interrupted the run, if one did
    cleanup_error: str = ""  # the run's containers could not all be removed: why

    @property
    def interrupted(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        if self.signal is not None:
            return 128 + self.signal  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        if self.cleanup_error or any(r.status is Status.ERROR for r in self.steps.values()):
            return ExitCode.ENGINE
        if self.image is not None and self.image.status is Status.FAILED:
            return ExitCode.STEP_FAILED
        stopped = (Status.CANCELLED, Status.INTERRUPTED)  # INTERRUPTED without a signal: watch
        if any(r.status.failed or r.status in stopped for r in self.steps.values()):
            return ExitCode.STEP_FAILED
        return ExitCode.OK
