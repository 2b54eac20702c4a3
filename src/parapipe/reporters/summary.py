"""Words every reporter shares, and the end-of-run summary in plain text or as a rich table."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from parapipe.errors import ExitCode
from parapipe.model import ImageResult, RunResult, Status, StepResult, split_instance

TAIL_LINES = 20  # how much of a failed step's output is repeated next to the failure

# The order statuses are counted in: what went wrong is named right after what passed.
_COUNT_ORDER = (
    Status.PASSED,
    Status.CACHED,
    Status.UNCHANGED,
    Status.FAILED,
    Status.TIMED_OUT,
    Status.ALLOWED_FAILURE,
    Status.ERROR,
    Status.INTERRUPTED,
    Status.CANCELLED,
    Status.SKIPPED,
    Status.RUNNING,
    Status.QUEUED,
)

STATUS_STYLES = {
    Status.QUEUED: "dim",
    Status.RUNNING: "cyan",
    Status.PASSED: "green",
    Status.CACHED: "green",
    Status.UNCHANGED: "dim green",
    Status.FAILED: "bold red",
    Status.TIMED_OUT: "bold red",
    Status.ALLOWED_FAILURE: "yellow",
    Status.SKIPPED: "yellow",
    Status.CANCELLED: "yellow",
    Status.INTERRUPTED: "yellow",
    Status.ERROR: "bold magenta",
}


def format_duration(seconds: float | None) -> str:
    """`0.4s`, `12.3s`, `2m03s`, `1h02m`; `-` when there is no duration."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def output_lines(raw: str) -> list[str]:
    """Split what a step printed into display lines.

    A carriage return redraws a terminal line (progress bars), so only what follows the last one
    in each line is what a terminal would have shown.
    """
    raw = raw.rstrip("\r\n")
    return [part.rstrip("\r").rsplit("\r", 1)[-1] for part in raw.split("\n")]


def step_detail(result: StepResult) -> str:
    """The reason column: why the step did not pass, or the exit code of a failure."""
    if result.reason:
        return result.reason
    if result.status is Status.FAILED and result.exit_code is not None:
        return f"exit {result.exit_code}"
    return ""


def describe_step(result: StepResult) -> str:
    """One status line for a finished step, as plain text."""
    status = result.status
    text = status.value
    if result.duration is not None:
        # A step that was stopped did not take that long: it was stopped after it.
        stopped = status in (Status.CANCELLED, Status.INTERRUPTED, Status.ERROR)
        text += f" {'after' if stopped else 'in'} {format_duration(result.duration)}"
    detail = step_detail(result)
    if detail:
        text += f": {detail}"
    if (
        status in (Status.FAILED, Status.TIMED_OUT, Status.ALLOWED_FAILURE, Status.ERROR)
        and result.log_path is not None
    ):
        text += f" (log: {result.log_path})"
    return text


def describe_image(result: ImageResult) -> str:
    """One status line for the finished image, as plain text."""
    if result.status is Status.PASSED:
        if result.reused:
            return f"reused {result.tag} (nothing to build)"
        return f"built {result.tag} in {format_duration(result.duration)}"
    text = f"build of {result.tag} {result.status.value}"
    if result.duration is not None:
        text += f" after {format_duration(result.duration)}"
    if result.reason:
        text += f": {result.reason}"
    if result.log_path is not None:
        text += f" (log: {result.log_path})"
    return text


def ordered_steps(result: RunResult, order: Sequence[str]) -> list[StepResult]:
    """The run's step results in the order the run announced, then any it did not announce;
    the instances of a matrix step together, where its first one is."""
    known = [result.steps[name] for name in order if name in result.steps]
    extra = [step for name, step in result.steps.items() if name not in order]
    groups: dict[str, list[StepResult]] = {}
    for step in known + extra:
        instance = split_instance(step.name)
        groups.setdefault(step.name if instance is None else instance[0] + "[", []).append(step)
    return [step for group in groups.values() for step in group]


@dataclass(frozen=True, kw_only=True)
class SummaryRow:
    """A row of a summary table: a step, an instance under its matrix step (`label` is then
    `[SHARD=0,PY=3.11]`), or the heading of a matrix step (`result` None)."""

    label: str
    result: StepResult | None
    instances: tuple[StepResult, ...] = ()  # of a heading

    @property
    def under_heading(self) -> bool:
        return self.result is not None and self.label.startswith("[")


def summary_rows(steps: Sequence[StepResult]) -> list[SummaryRow]:
    """`steps` (as `ordered_steps` gives them) with a heading before each matrix step's
    instances."""
    rows: list[SummaryRow] = []
    for index, step in enumerate(steps):
        instance = split_instance(step.name)
        if instance is None:
            rows.append(SummaryRow(label=step.name, result=step))
            continue
        base, label = instance
        if index == 0 or _matrix_of(steps[index - 1]) != base:
            members = tuple(s for s in steps if _matrix_of(s) == base)
            rows.append(SummaryRow(label=base, result=None, instances=members))
        rows.append(SummaryRow(label=f"[{label}]", result=step))
    return rows


def _matrix_of(step: StepResult) -> str | None:
    instance = split_instance(step.name)
    return None if instance is None else instance[0]


def matrix_tally(instances: Sequence[StepResult]) -> str:
    """`matrix of 4: 3 passed, 1 failed`."""
    counts = Counter(step.status for step in instances)
    parts = [f"{counts[s]} {_count_word(s, counts[s])}" for s in _COUNT_ORDER if counts[s]]
    return f"matrix of {len(instances)}: {', '.join(parts)}"


def matrix_status(instances: Sequence[StepResult]) -> Status:
    """The status a matrix step's heading shows: the first of its instances' statuses in the
    order of the count line from the end (what went wrong outranks what passed)."""
    present = {step.status for step in instances}
    return next(s for s in reversed(_COUNT_ORDER) if s in present) if present else Status.QUEUED


def count_line(result: RunResult) -> str:
    """`4 passed, 1 failed, 2 skipped in 3.4s`."""
    counts = Counter(step.status for step in result.steps.values())
    parts = [
        f"{counts[status]} {_count_word(status, counts[status])}"
        for status in _COUNT_ORDER
        if counts[status]
    ]
    return f"{', '.join(parts) or 'no steps'} in {format_duration(result.duration)}"


def exit_line(result: RunResult) -> str:
    """`exit 1: a step did not pass`: the exit code and what it means for this run."""
    return f"exit {result.exit_code}: {_exit_meaning(result)}"


def plain_summary_lines(result: RunResult, order: Sequence[str]) -> list[str]:
    """The summary as aligned plain text, one string per line, without newlines."""
    rows = [("step", "status", "duration", "detail")]
    rows += [_plain_row(row) for row in summary_rows(ordered_steps(result, order))]
    name_width = max(len(row[0]) for row in rows)
    status_width = max(len(row[1]) for row in rows)
    duration_width = max(len(row[2]) for row in rows)
    lines = [f"pipeline {result.pipeline}, run {result.run_id}, engine {result.engine}"]
    if result.image is not None:
        lines.append(f"image: {describe_image(result.image)}")
    if result.steps:
        lines += [
            f"  {name:<{name_width}}  {status:<{status_width}}  "
            f"{duration:>{duration_width}}  {detail}".rstrip()
            for name, status, duration, detail in rows
        ]
    lines += [count_line(result), exit_line(result), f"logs: {result.run_dir}"]
    return lines


def _plain_row(row: SummaryRow) -> tuple[str, str, str, str]:
    step = row.result
    if step is None:
        return row.label, "", "", matrix_tally(row.instances)
    label = f"  {row.label}" if row.under_heading else row.label
    return label, step.status.value, format_duration(step.duration), step_detail(step)


def rich_summary(result: RunResult, order: Sequence[str]) -> RenderableType:
    """The summary as a rich table with the count, exit and log lines under it."""
    table = Table(expand=False)
    table.add_column("step", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for row in summary_rows(ordered_steps(result, order)):
        step = row.result
        if step is None:
            table.add_row(Text(row.label), "", "", Text(matrix_tally(row.instances)))
            continue
        table.add_row(
            Text(f"  {row.label}" if row.under_heading else row.label),
            Text(step.status.value, style=STATUS_STYLES[step.status]),
            format_duration(step.duration),
            Text(step_detail(step)),
        )
    header = f"pipeline {result.pipeline}, run {result.run_id}, engine {result.engine}"
    parts: list[RenderableType] = [Text(header, style="bold")]
    if result.image is not None:
        image_style = "" if result.image.status is Status.PASSED else STATUS_STYLES[Status.FAILED]
        parts.append(Text(f"image: {describe_image(result.image)}", style=image_style))
    if result.steps:
        parts.append(table)
    outcome_style = "bold green" if result.exit_code is ExitCode.OK else "bold red"
    parts.append(Text(count_line(result), style=outcome_style))
    parts.append(Text(exit_line(result)))
    parts.append(Text(f"logs: {result.run_dir}", style="dim"))
    return Group(*parts)


def _count_word(status: Status, count: int) -> str:
    if status is Status.ERROR:
        return "error" if count == 1 else "errors"
    return str(status.value)


def _exit_meaning(result: RunResult) -> str:
    if result.signal is not None:
        return f"interrupted by {_signal_name(result.signal)}"
    code = result.exit_code
    if code == ExitCode.OK:
        return "every step passed"
    if code == ExitCode.ENGINE:
        return "the container engine failed"
    if result.image is not None and result.image.status is Status.FAILED:
        return "the image could not be built"
    if any(r.status is Status.INTERRUPTED for r in result.steps.values()):
        return "stopped before the end"  # by `parapipe watch`, for the next run
    return "a step did not pass"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
