"""The live view's rows: each step's state as its events tell it, a matrix step's instances
grouped under one heading row, and the choice of lines that fit the terminal."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from rich.spinner import Spinner

from parapipe.model import Status, split_instance
from parapipe.reporters.summary import TAIL_LINES, output_lines

# When the terminal is too short for every row, these are shown first; ties keep run order.
_ROW_PRIORITY = {
    Status.RUNNING: 0,
    Status.FAILED: 1,
    Status.TIMED_OUT: 1,
    Status.ERROR: 1,
    Status.ALLOWED_FAILURE: 2,
    Status.INTERRUPTED: 2,
    Status.QUEUED: 3,
    Status.CANCELLED: 4,
    Status.SKIPPED: 4,
    Status.PASSED: 5,
    Status.CACHED: 5,
    Status.UNCHANGED: 5,
}
# A matrix step's heading shows the first of its instances' statuses in this order: what went
# wrong, then what is still to come (so the step reads as unfinished), then what passed. The
# heading's tally counts them in the same order.
_HEADING_ORDER = (
    Status.FAILED,
    Status.TIMED_OUT,
    Status.ERROR,
    Status.INTERRUPTED,
    Status.RUNNING,
    Status.QUEUED,
    Status.ALLOWED_FAILURE,
    Status.CANCELLED,
    Status.SKIPPED,
    Status.PASSED,
    Status.CACHED,
    Status.UNCHANGED,
)
_TALLY_WORDS = {Status.QUEUED: "waiting"}


@dataclass(kw_only=True)
class LiveRow:
    """A step (or the image) as the live view knows it so far."""

    label: str
    status: Status = Status.QUEUED
    started: float | None = None  # on the reporter's clock
    ended: float | None = None  # on the reporter's clock
    duration: float | None = None
    last_line: str = ""
    detail: str = ""
    spinner: Spinner | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def start(self, now: float, spinner: Spinner) -> None:
        self.status = Status.RUNNING
        self.started = now
        self.spinner = spinner

    def add_output(self, raw: str) -> None:
        for line in output_lines(raw):
            self.tail.append(line)
            if line.strip():
                self.last_line = line

    def finish(self, status: Status, duration: float | None, detail: str, now: float) -> None:
        if duration is None and self.started is not None:
            duration = now - self.started
        self.status, self.duration, self.detail, self.spinner = status, duration, detail, None
        self.ended = now


class LineKind(Enum):
    STEP = "step"  # a step of its own, or the image
    HEADING = "heading"  # a matrix step, over its instances
    INSTANCE = "instance"  # one instance of a matrix step, under its heading


@dataclass(frozen=True, kw_only=True)
class DisplayLine:
    """One line of the live view."""

    kind: LineKind
    row: LiveRow  # a heading's is made from its instances' rows at each frame
    name: str  # what the name column shows: an instance's values, indented
    members: tuple[LiveRow, ...] = ()  # a heading's instances
    collapsed: bool = False  # a heading whose instances have no lines of their own

    @property
    def priority(self) -> int:
        """Lower is shown first; a heading ranks as its most urgent instance, so it is never
        left out while one of its instances is shown."""
        rows = self.members or (self.row,)
        return min(_ROW_PRIORITY[row.status] for row in rows)

    @property
    def counted(self) -> tuple[LiveRow, ...]:
        """The rows this line stands for in the `… N more` tally when it is left out."""
        if self.kind is LineKind.HEADING:
            return self.members if self.collapsed else ()
        return (self.row,)


def step_line(row: LiveRow) -> DisplayLine:
    return DisplayLine(kind=LineKind.STEP, row=row, name=row.label)


def display_lines(rows: Iterable[LiveRow], now: float, *, collapse: bool) -> list[DisplayLine]:
    """The lines for `rows` in their order, a matrix step's instances together where its first
    one is, under a heading; with `collapse`, a finished matrix step whose instances all passed
    is its heading alone."""
    groups: dict[str, list[LiveRow]] = {}
    for row in rows:
        instance = split_instance(row.label)
        # A step's name never holds '[', so `test[` cannot be a plain step's key.
        groups.setdefault(row.label if instance is None else instance[0] + "[", []).append(row)
    lines: list[DisplayLine] = []
    for key, members in groups.items():
        if not key.endswith("["):
            lines.append(step_line(members[0]))
            continue
        folded = collapse and all(row.status.ok for row in members)
        heading = _heading_row(key[:-1], members, now)
        lines.append(
            DisplayLine(
                kind=LineKind.HEADING,
                row=heading,
                name=heading.label,
                members=tuple(members),
                collapsed=folded,
            )
        )
        if not folded:
            lines += [
                DisplayLine(kind=LineKind.INSTANCE, row=row, name=f"  {_values(row)}")
                for row in members
            ]
    return lines


def fit(lines: Sequence[DisplayLine], limit: int) -> tuple[list[DisplayLine], list[LiveRow]]:
    """The lines shown within `limit` lines, and the rows summed up in one line for the rest."""
    if len(lines) <= limit:
        return list(lines), []
    ranked = sorted(range(len(lines)), key=lambda i: (lines[i].priority, i))
    keep = set(ranked[: limit - 1])
    shown = [line for i, line in enumerate(lines) if i in keep]
    hidden = [row for i, line in enumerate(lines) if i not in keep for row in line.counted]
    return shown, hidden


def tally(rows: Iterable[LiveRow]) -> str:
    """`18 passed, 2 queued`: the most frequent first."""
    counts = Counter(row.status for row in rows)
    return ", ".join(f"{n} {status.value}" for status, n in counts.most_common())


def matrix_progress(members: Sequence[LiveRow]) -> str:
    """`3/4 passed, 1 running`: how far a matrix step's instances are."""
    counts = Counter(row.status for row in members)
    passed = sum(n for status, n in counts.items() if status.ok)
    parts = [f"{passed}/{len(members)} passed"]
    parts += [
        f"{counts[status]} {_TALLY_WORDS.get(status, status.value)}"
        for status in _HEADING_ORDER
        if counts[status] and not status.ok
    ]
    return ", ".join(parts)


def _heading_row(step: str, members: Sequence[LiveRow], now: float) -> LiveRow:
    present = {row.status for row in members}
    status = next(s for s in _HEADING_ORDER if s in present)
    spinners = [row.spinner for row in members if row.spinner is not None]
    starts = [row.started for row in members if row.started is not None]
    ends = [row.ended for row in members if row.ended is not None]
    if starts:  # the step's wall time, still growing while an instance runs
        end = now if Status.RUNNING in present or not ends else max(ends)
        duration: float | None = end - min(starts)
    else:  # none ran here (all cached, say): the longest the step cache reports
        duration = max((r.duration for r in members if r.duration is not None), default=None)
    return LiveRow(
        label=step,
        status=status,
        started=min(starts) if starts and status is Status.RUNNING else None,
        duration=duration,
        detail=matrix_progress(members),
        spinner=spinners[0] if spinners and status is Status.RUNNING else None,
    )


def _values(row: LiveRow) -> str:
    instance = split_instance(row.label)
    return row.label if instance is None else instance[1]


def step_of(name: str) -> str:
    """The matrix step an instance's name belongs to; any other name as it is."""
    instance = split_instance(name)
    return name if instance is None else instance[0]
