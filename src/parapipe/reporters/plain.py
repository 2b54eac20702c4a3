"""Line-oriented reporters for CI logs, pipes and hooks: no colour, no cursor movement.

Every line is written with one `write` call and flushed, so lines from steps running at the
same time never interleave mid-line, and a CI log shows each line as soon as it exists.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from typing import TextIO

from parapipe.model import ImageResult, RunInfo, RunResult, Status, StepResult
from parapipe.reporters.base import Reporter
from parapipe.reporters.summary import (
    TAIL_LINES,
    describe_image,
    describe_step,
    output_lines,
    plain_summary_lines,
)

IMAGE_LABEL = "[image]"  # brackets so it cannot be mistaken for a step called "image"

_FAILURES = (Status.FAILED, Status.TIMED_OUT, Status.ALLOWED_FAILURE, Status.ERROR)


class _LineReporter(Reporter):
    """Writes `label | text` lines with the labels padded to one width, and the summary."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._width = len(IMAGE_LABEL)
        self._order: Sequence[str] = ()
        self._image_tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._closed = False
        self._reader_gone = False
        self._wrote_lines = False

    def run_started(self, info: RunInfo) -> None:
        self._order = tuple(info.steps)
        self._width = max([len(IMAGE_LABEL), *(len(name) for name in info.steps)])

    def image_output(self, line: str) -> None:
        self._image_tail.extend(output_lines(line))

    def image_finished(self, result: ImageResult) -> None:
        if result.status is not Status.PASSED:
            self._write_image_failure(result)
        self._image_tail.clear()

    def run_finished(self, result: RunResult) -> None:
        if self._wrote_lines:
            self._write("")  # set the summary apart from what the run showed
        for line in plain_summary_lines(result, self._order):
            self._write(line)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # The reader went away or the stream is closed: there is nobody left to tell.
        with suppress(OSError, ValueError):
            self._stream.flush()

    def _write_image_failure(self, result: ImageResult) -> None:
        self._line(IMAGE_LABEL, describe_image(result))
        for line in self._image_tail:
            self._line(IMAGE_LABEL, line)

    def _line(self, label: str, text: str) -> None:
        self._write(f"{label:<{self._width}} | {text}")

    def _write(self, line: str) -> None:
        if self._reader_gone:
            return
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
            self._wrote_lines = True
        except BrokenPipeError:
            # `parapipe run | head`: the run goes on and keeps its logs and exit code; only
            # showing it stops, instead of a reporter's error aborting the steps.
            self._reader_gone = True


class PlainReporter(_LineReporter):
    """Every step's output and status as prefixed lines, then the summary."""

    def run_started(self, info: RunInfo) -> None:
        super().run_started(info)
        self._write(
            f"pipeline {info.pipeline} ({info.spec_path}): {len(info.steps)} steps, "
            f"up to {info.jobs} at once, engine {info.engine_at} ({info.engine_reason}), "
            f"run {info.run_id}, logs in {info.run_dir}"
        )

    def image_started(self, tag: str) -> None:
        # Whether it will be built or reused is only known when it is finished.
        self._line(IMAGE_LABEL, f"preparing {tag}")

    def image_finished(self, result: ImageResult) -> None:
        if result.status is Status.PASSED:
            self._line(IMAGE_LABEL, describe_image(result))
        super().image_finished(result)

    def step_started(self, name: str) -> None:
        self._line(name, "started")

    def step_output(self, name: str, line: str) -> None:
        for part in output_lines(line):
            self._line(name, part)

    def step_finished(self, result: StepResult) -> None:
        self._line(result.name, describe_step(result))


class QuietReporter(_LineReporter):
    """Silent while running except for failures and their last lines, then the summary."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._tails: dict[str, deque[str]] = {}

    def step_output(self, name: str, line: str) -> None:
        tail = self._tails.setdefault(name, deque(maxlen=TAIL_LINES))
        tail.extend(output_lines(line))

    def step_finished(self, result: StepResult) -> None:
        tail = self._tails.pop(result.name, ())
        if result.status in _FAILURES:
            self._line(result.name, describe_step(result))
            for line in tail:
                self._line(result.name, line)
