"""The terminal view: one live row per step, failures printed above it, the summary at the end.

The runner calls the reporter from the event loop thread while rich redraws from its own
refresh thread, so the rows are guarded by a lock that is never held while calling into rich:
rich's refresh thread takes its own lock first and then ours, and taking them in the other
order could deadlock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from parapipe.model import ImageResult, RunInfo, RunResult, Status, StepResult
from parapipe.reporters.base import Reporter
from parapipe.reporters.eta import estimate_remaining
from parapipe.reporters.live_rows import (
    DisplayLine,
    LineKind,
    LiveRow,
    display_lines,
    fit,
    step_line,
    step_of,
    tally,
)
from parapipe.reporters.summary import (
    STATUS_STYLES,
    describe_image,
    describe_step,
    format_duration,
    rich_summary,
    step_detail,
)

REFRESH_PER_SECOND = 8.0

_GLYPHS = {
    Status.QUEUED: "·",
    Status.RUNNING: "▸",  # only in a frozen frame; a running row shows a spinner
    Status.PASSED: "✓",
    Status.CACHED: "✓",
    Status.UNCHANGED: "=",
    Status.FAILED: "✗",
    Status.TIMED_OUT: "⧗",
    Status.ALLOWED_FAILURE: "~",
    Status.SKIPPED: "»",
    Status.CANCELLED: "○",
    Status.INTERRUPTED: "■",
    Status.ERROR: "!",
}
_ASCII_GLYPHS = {
    Status.QUEUED: ".",
    Status.RUNNING: ">",
    Status.PASSED: "+",
    Status.CACHED: "+",
    Status.UNCHANGED: "=",
    Status.FAILED: "x",
    Status.TIMED_OUT: "t",
    Status.ALLOWED_FAILURE: "~",
    Status.SKIPPED: "-",
    Status.CANCELLED: "o",
    Status.INTERRUPTED: "#",
    Status.ERROR: "!",
}

_FAILURES = (Status.FAILED, Status.TIMED_OUT, Status.ALLOWED_FAILURE, Status.ERROR)
_IMAGE_LABEL = "image"
_DURATION_WIDTH = 6  # "12.3s", "2m03s", "59m59s"
_NARROW_WIDTH = 80  # columns; narrower, a matrix step whose instances all passed is one line


class LiveReporter(Reporter):
    """A `rich.live.Live` table of the steps that redraws itself at most `refresh_per_second`."""

    def __init__(
        self,
        console: Console,
        *,
        refresh_per_second: float = REFRESH_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        durations: Mapping[str, float] | None = None,
    ) -> None:
        self.console = console
        self._durations = dict(durations or {})  # earlier runs' median seconds, for the ETA
        self._jobs = 1
        self._refresh_per_second = refresh_per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._image: LiveRow | None = None
        self._rows: dict[str, LiveRow] = {}
        self._needs: dict[str, tuple[str, ...]] = {}
        self._order: Sequence[str] = ()
        self._live: Live | None = None
        self._run_over = False
        ascii_only = not console.encoding.lower().startswith("utf")
        self._glyphs = _ASCII_GLYPHS if ascii_only else _GLYPHS
        self._spinner_name = "line" if ascii_only else "dots"

    def run_started(self, info: RunInfo) -> None:
        with self._lock:
            self._order = tuple(info.steps)
            self._needs = dict(info.needs)
            self._jobs = info.jobs
            for name in info.steps:
                self._rows.setdefault(name, LiveRow(label=name))
        header = Text.assemble(
            ("parapipe", "bold"),
            f" · pipeline {info.pipeline} · {len(info.steps)} steps, up to {info.jobs} at once"
            f" · {info.engine_at} ({info.engine_reason}) · run {info.run_id}",
        )
        self.console.print(header, highlight=False)
        self.console.print(Text(f"logs: {info.run_dir}", style="dim"), highlight=False)
        if self._live is None and not self._run_over:
            self._live = Live(
                console=self.console,
                get_renderable=self.render,
                refresh_per_second=self._refresh_per_second,
                transient=True,  # the summary replaces the rows when the run ends
            )
            self._live.start()

    def image_started(self, tag: str) -> None:
        with self._lock:
            self._image = LiveRow(label=_IMAGE_LABEL, detail=tag)
            self._image.start(self._clock(), self._spinner())

    def image_output(self, line: str) -> None:
        with self._lock:
            if self._image is not None:
                self._image.add_output(line)

    def image_finished(self, result: ImageResult) -> None:
        with self._lock:
            image = self._image or LiveRow(label=_IMAGE_LABEL)
            self._image = image
            image.finish(result.status, result.duration, describe_image(result), self._clock())
            tail = list(image.tail)
        if result.status is not Status.PASSED:
            self._print_failure(_IMAGE_LABEL, describe_image(result), result.log_path, tail)

    def step_started(self, name: str) -> None:
        with self._lock:
            self._row(name).start(self._clock(), self._spinner())

    def step_output(self, name: str, line: str) -> None:
        with self._lock:
            self._row(name).add_output(line)

    def step_finished(self, result: StepResult) -> None:
        with self._lock:
            row = self._row(result.name)
            row.finish(result.status, result.duration, step_detail(result), self._clock())
            tail = list(row.tail)
        if result.status in _FAILURES:
            self._print_failure(result.name, describe_step(result), result.log_path, tail)

    def run_finished(self, result: RunResult) -> None:
        self._run_over = True
        self._stop_live()
        self.console.line()
        self.console.print(rich_summary(result, self._order))

    def close(self) -> None:
        if self._stop_live() and not self._run_over:
            # The run ended without a summary (an exception): leave its last state on screen.
            with suppress(OSError):
                self.console.print(self.render(frozen=True))
        self._run_over = True

    def render(self, *, frozen: bool = False) -> RenderableType:
        """The rows as they are now; `frozen` draws a glyph instead of a spinner."""
        with self._lock:
            now = self._clock()
            eta = self._eta(now)
            limit = max(self.console.size.height - 2 - bool(eta), 4)
            shown, hidden = fit(self._lines(now, limit), limit)
            # Two columns short of the edge: the terminal echoes `^C` where the cursor is, and
            # at the edge that wraps a line, which leaves a stale row when the view is erased.
            width = max(self.console.size.width - 2, 20)
            table = Table.grid(padding=(0, 1), expand=True)
            table.width = width
            table.add_column(width=1, no_wrap=True)
            table.add_column(no_wrap=True, overflow="ellipsis", max_width=self._name_width())
            table.add_column(justify="right", no_wrap=True, width=_DURATION_WIDTH)
            table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
            for line in shown:
                table.add_row(
                    self._glyph(line.row, frozen),
                    self._name(line),
                    self._duration(line.row, now),
                    self._last_column(line),
                )
            parts: list[RenderableType] = [table]
            if hidden:
                parts.append(Text(f"… {len(hidden)} more: {tally(hidden)}", style="dim"))
            if eta:
                parts.append(Text(eta, style="dim"))
            return parts[0] if len(parts) == 1 else Group(*parts)

    def _lines(self, now: float, limit: int) -> list[DisplayLine]:
        """Every line, a matrix step's instances under its heading; on a narrow terminal, or
        one too short for them all, a matrix step whose instances all passed is one line."""
        image = [step_line(self._image)] if self._image is not None else []
        lines = image + display_lines(self._rows.values(), now, collapse=False)
        if self.console.size.width < _NARROW_WIDTH or len(lines) > limit:
            lines = image + display_lines(self._rows.values(), now, collapse=True)
        return lines

    def _eta(self, now: float) -> str:
        """`ETA: about 1m20s left (from earlier runs)` while steps run; "" when unknown."""
        if not self._durations or not self._needs:
            return ""
        if self._image is not None and self._image.status is Status.RUNNING:
            return ""  # how long the image takes is not known, and no step has started
        running = {
            name: now - row.started
            for name, row in self._rows.items()
            if row.status is Status.RUNNING and row.started is not None
        }
        done = [name for name, row in self._rows.items() if row.status.finished]
        estimate = estimate_remaining(
            self._needs, self._durations, done=done, running=running, jobs=self._jobs
        )
        if estimate is None or len(done) == len(self._rows):
            return ""
        return f"ETA: {estimate.describe()} (from earlier runs)"

    def _row(self, name: str) -> LiveRow:
        return self._rows.setdefault(name, LiveRow(label=name))

    def _spinner(self) -> Spinner:
        return Spinner(self._spinner_name, style=STATUS_STYLES[Status.RUNNING])

    def _stop_live(self) -> bool:
        """Stop the live display if it runs; True if it did."""
        live, self._live = self._live, None
        if live is None:
            return False
        with suppress(OSError):  # a closed terminal: nothing more can be shown on it
            live.stop()
        return True

    def _print_failure(
        self, name: str, outcome: str, log_path: Path | None, lines: Iterable[str]
    ) -> None:
        style = STATUS_STYLES[Status.FAILED]
        header = Text.assemble((f"{self._glyphs[Status.FAILED]} {name}", style), f" {outcome}")
        if log_path is not None and str(log_path) not in outcome:
            header.append(f" (log: {log_path})", style="dim")
        body = [Text.assemble(("│ ", "red"), Text.from_ansi(line)) for line in lines]
        if not body:
            body = [Text("│ (no output)", style="dim")]
        self.console.print(Group(header, *body), highlight=False, soft_wrap=True)

    def _name_width(self) -> int:
        return max(12, self.console.size.width // 3)

    def _glyph(self, row: LiveRow, frozen: bool) -> RenderableType:
        if row.spinner is not None and not frozen:
            return row.spinner
        return Text(self._glyphs[row.status], style=STATUS_STYLES[row.status])

    def _name(self, line: DisplayLine) -> Text:
        row = line.row
        style = "italic" if row is self._image else ""
        if row.status is Status.RUNNING:
            style += " bold"
        elif row.status in (Status.QUEUED, Status.SKIPPED, Status.CANCELLED):
            style += " dim"
        return Text(line.name, style=style.strip())

    def _duration(self, row: LiveRow, now: float) -> str:
        if row.status is Status.RUNNING and row.started is not None:
            return format_duration(now - row.started)
        return "" if row.duration is None else format_duration(row.duration)

    def _last_column(self, line: DisplayLine) -> Text:
        row, status = line.row, line.row.status
        if status is Status.QUEUED:
            if line.kind is LineKind.INSTANCE:
                return Text("")  # what it waits for is on its heading
            after = self._after(line.members[0].label if line.members else row.label)
            return Text(after or (row.detail if line.members else ""), style="dim")
        if line.kind is LineKind.HEADING:
            style = "dim" if status.ok else STATUS_STYLES[status]
            return Text(row.detail, style="" if status is Status.RUNNING else style)
        if status is Status.RUNNING:
            return Text.from_ansi(row.last_line) if row.last_line else Text(row.detail, "dim")
        if status is Status.PASSED:
            if row is self._image:
                return Text(row.detail, style="dim")
            return Text.from_ansi(row.last_line, style="dim")
        return Text(row.detail, style=STATUS_STYLES[status])

    def _after(self, name: str) -> str:
        """`after lint, test`: the needs a step still waits for, a matrix step's instances by
        their step's name."""
        pending = [step_of(need) for need in self._needs.get(name, ()) if self._waits_on(need)]
        return f"after {', '.join(dict.fromkeys(pending))}" if pending else ""

    def _waits_on(self, need: str) -> bool:
        row = self._rows.get(need)
        return row is not None and row.status is not Status.PASSED
