"""The errors a user can cause, each with the exit code the CLI documents.

Anything raised that is not a `ParapipeError` is a bug: the CLI logs its traceback to the
run's folder and exits with `ExitCode.INTERNAL`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


@dataclass(frozen=True, kw_only=True, slots=True)
class Location:
    """A place in a spec file; line and column count from 1, as editors show them.

    It lives here, not in the model, so that errors stay a leaf that imports no other part of
    parapipe; `parapipe.model` exports it with the other domain types.
    """

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ExitCode(IntEnum):
    OK = 0
    STEP_FAILED = 1
    USAGE = 2
    ENGINE = 3
    INTERNAL = 3
    INTERRUPTED = 130
    TERMINATED = 143


class ParapipeError(Exception):
    """Base of every error shown to the user as one line."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SpecError(ParapipeError):
    """The pipeline spec is invalid; points at FILE:LINE:COL when the place is known."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, location: Location | None = None) -> None:
        super().__init__(message)
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class UsageError(ParapipeError):
    """The command line asks for something that cannot be done (an unknown step, a bad flag)."""

    exit_code = ExitCode.USAGE


class EngineUnavailable(ParapipeError):
    """No container engine answered, or the chosen one is missing."""

    exit_code = ExitCode.ENGINE


class EngineError(ParapipeError):
    """The engine failed in a way that is not the user's commands failing."""

    exit_code = ExitCode.ENGINE


class OutputError(ParapipeError):
    """A step passed but did not produce a declared output, or produced one that points
    outside the workdir. The step fails, as if its commands had."""

    exit_code = ExitCode.STEP_FAILED


class ServiceFailed(ParapipeError):
    """A service of a step exited, or was not ready in time, before the step started. The
    step fails, as if its commands had."""

    exit_code = ExitCode.STEP_FAILED


class ImageBuildFailed(ParapipeError):
    """The pipeline image could not be built: a setup command or the Dockerfile failed.

    This is the user's build failing, like a step failing, so it exits 1 and keeps its log.
    """

    exit_code = ExitCode.STEP_FAILED


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the candidate closest to a mistyped `word`, else ''."""
    matches = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
