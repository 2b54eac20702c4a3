"""`--timeline PATH.html`: a Gantt chart of the run in one self-contained HTML file.

One row per step, one bar per attempt, coloured by status, on one time axis from the start of
the run. The critical path is outlined: the chain of needs that the last step to finish waited
on, back to the image. Plain HTML and CSS, no script and nothing fetched, so the file opens
anywhere, a CI artifact viewer included.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from parapipe.model import RunInfo, RunResult, Status, StepResult
from parapipe.reporters.base import Reporter
from parapipe.reporters.report_file import write_report
from parapipe.reporters.summary import (
    count_line,
    describe_image,
    exit_line,
    format_duration,
    matrix_status,
    matrix_tally,
    ordered_steps,
    step_detail,
    summary_rows,
)

FLAG = "--timeline"
IMAGE_ROW = "[image]"

COLOURS: Mapping[Status, str] = {
    Status.PASSED: "#2da44e",
    Status.CACHED: "#7fd1a0",
    Status.UNCHANGED: "#afb8c1",
    Status.FAILED: "#cf222e",
    Status.TIMED_OUT: "#bc4c00",
    Status.ALLOWED_FAILURE: "#d4a72c",
    Status.ERROR: "#8250df",
    Status.CANCELLED: "#e6c35c",
    Status.INTERRUPTED: "#e6c35c",
    Status.SKIPPED: "#eaeef2",
    Status.RUNNING: "#54aeff",
    Status.QUEUED: "#eaeef2",
}
_TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
_MOST_TICKS = 10


@dataclass(frozen=True, kw_only=True)
class Bar:
    row: str
    start: float  # seconds from the start of the run
    duration: float
    status: Status
    label: str  # the tooltip


class TimelineReporter(Reporter):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._info: RunInfo | None = None

    def run_started(self, info: RunInfo) -> None:
        self._info = info

    def run_finished(self, result: RunResult) -> None:
        needs = self._info.needs if self._info is not None else {}
        order = self._info.steps if self._info is not None else ()
        write_report(self.path, timeline_html(result, needs, order), FLAG)


def bars(result: RunResult, order: Sequence[str] = ()) -> list[Bar]:
    """Every attempt of every step (and the image build) as a bar on the run's time axis."""
    found: list[Bar] = []
    image = result.image
    if image is not None and image.duration is not None:
        found.append(
            Bar(
                row=IMAGE_ROW,
                start=0.0,
                duration=image.duration,
                status=image.status,
                label=describe_image(image),
            )
        )
    for step in ordered_steps(result, order):
        found.extend(_step_bars(step, result.started_at))
    return found


def _step_bars(step: StepResult, run_start: float) -> list[Bar]:
    if step.attempts:
        total = len(step.attempts)
        return [
            Bar(
                row=step.name,
                start=attempt.started_at - run_start,
                duration=attempt.duration,
                status=attempt.status,
                label=f"{step.name}: attempt {attempt.number}/{max(total, step.max_attempts)} "
                f"{attempt.status.value} in {format_duration(attempt.duration)}",
            )
            for attempt in step.attempts
        ]
    if step.started_at is None or step.duration is None:
        return []  # skipped, unchanged or never started: nothing ran
    label = f"{step.name}: {step.status.value} after {format_duration(step.duration)}"
    return [
        Bar(
            row=step.name,
            start=step.started_at - run_start,
            duration=step.duration,
            status=step.status,
            label=label,
        )
    ]


def critical_path(
    spans: Mapping[str, tuple[float, float]], needs: Mapping[str, Sequence[str]]
) -> list[str]:
    """The chain of needs, first to last, that the step finishing last waited on.

    `spans` holds (start, end) of each step that ran. From the last step to finish, go back
    to whichever of its needs finished last, and so on to a step that needed nothing that ran.
    """
    if not spans:
        return []
    current = max(spans, key=lambda name: spans[name][1])
    path = [current]
    while True:
        before = [need for need in needs.get(current, ()) if need in spans]
        if not before:
            break
        current = max(before, key=lambda name: spans[name][1])
        path.append(current)
    return path[::-1]


def timeline_html(
    result: RunResult,
    needs: Mapping[str, Sequence[str]],
    order: Sequence[str] = (),
) -> str:
    found = bars(result, order)
    total = max([result.duration, *(bar.start + bar.duration for bar in found)], default=0.0)
    total = max(total, 0.001)
    spans: dict[str, tuple[float, float]] = {}
    for bar in found:
        if bar.row != IMAGE_ROW:
            start, end = spans.get(bar.row, (bar.start, bar.start + bar.duration))
            spans[bar.row] = (min(start, bar.start), max(end, bar.start + bar.duration))
    critical = set(critical_path(spans, needs))
    if critical and any(bar.row == IMAGE_ROW for bar in found):
        critical.add(IMAGE_ROW)  # every step waited for the image

    rows: list[tuple[str, Status, str]] = []
    if result.image is not None:
        rows.append((IMAGE_ROW, result.image.status, result.image.reason))
    for row in summary_rows(ordered_steps(result, order)):
        if row.result is None:  # a matrix step: a heading over its instances' rows
            rows.append((row.label, matrix_status(row.instances), matrix_tally(row.instances)))
        else:
            rows.append((row.result.name, row.result.status, step_detail(row.result)))
    body = [_axis(total)]
    for name, status, detail in rows:
        row_bars = [bar for bar in found if bar.row == name]
        body.append(_row(name, status, detail, row_bars, total, name in critical))
    title = f"parapipe · {result.pipeline} · run {result.run_id}"
    return _PAGE.format(
        title=html.escape(title),
        heading=html.escape(f"pipeline {result.pipeline}"),
        meta=html.escape(
            f"run {result.run_id} · engine {result.engine} · {count_line(result)} · "
            f"{exit_line(result)}"
        ),
        legend=_legend(),
        style=_STYLE,
        rows="\n".join(body),
    )


def _row(
    name: str, status: Status, detail: str, row_bars: list[Bar], total: float, critical: bool
) -> str:
    drawn = "".join(_bar(bar, total, critical) for bar in row_bars)
    classes = "row critical" if critical else "row"
    marker = ' <span class="star" title="on the critical path">★</span>' if critical else ""
    return (
        f'<div class="{classes}" data-step="{html.escape(name)}" '
        f'data-status="{status.name.lower()}">'
        f'<div class="label">{html.escape(name)}{marker}</div>'
        f'<div class="track">{drawn}</div>'
        f'<div class="detail">{html.escape(status.value)}'
        f"{html.escape(': ' + detail) if detail else ''}</div></div>"
    )


def _bar(bar: Bar, total: float, critical: bool) -> str:
    left = 100.0 * bar.start / total
    width = 100.0 * bar.duration / total
    classes = "bar critical" if critical else "bar"
    return (
        f'<div class="{classes}" data-status="{bar.status.name.lower()}" '
        f'data-start="{bar.start:.3f}" data-duration="{bar.duration:.3f}" '
        f'style="left:{left:.3f}%;width:{width:.3f}%;background:{COLOURS[bar.status]}" '
        f'title="{html.escape(bar.label)}"></div>'
    )


def _axis(total: float) -> str:
    step = next((s for s in _TICK_STEPS if total / s <= _MOST_TICKS), _TICK_STEPS[-1])
    ticks = []
    count = int(total / step) + 1
    for index in range(count):
        at = index * step
        ticks.append(
            f'<div class="tick" style="left:{100.0 * at / total:.3f}%">'
            f"{html.escape(format_duration(at) if at else '0s')}</div>"
        )
    return (
        '<div class="row axis"><div class="label"></div>'
        f'<div class="track">{"".join(ticks)}</div><div class="detail"></div></div>'
    )


def _legend() -> str:
    shown = (
        Status.PASSED,
        Status.CACHED,
        Status.FAILED,
        Status.TIMED_OUT,
        Status.ALLOWED_FAILURE,
        Status.ERROR,
        Status.CANCELLED,
    )
    items = "".join(
        f'<span class="key"><span class="swatch" style="background:{COLOURS[s]}"></span>'
        f"{html.escape(s.value)}</span>"
        for s in shown
    )
    return items + '<span class="key"><span class="swatch critical"></span>critical path</span>'


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #59636e; margin: 0 0 16px; }
.chart { display: grid; gap: 4px; }
.row { display: grid; grid-template-columns: 12em 1fr 22em; align-items: center; gap: 8px; }
.label { font-family: ui-monospace, monospace; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.row.critical .label { font-weight: 700; }
.star { color: #0969da; }
.track { position: relative; height: 20px; background: #f6f8fa; border-radius: 3px; }
.axis .track { background: none; height: 16px; border-bottom: 1px solid #d1d9e0; }
.tick { position: absolute; bottom: 2px; font-size: 11px; color: #59636e;
  transform: translateX(-50%); white-space: nowrap; }
.tick:first-child { transform: none; }
.bar { position: absolute; top: 2px; bottom: 2px; min-width: 2px; border-radius: 3px;
  box-sizing: border-box; }
.bar.critical { outline: 3px solid #0969da; outline-offset: 1px; z-index: 1; }
.detail { color: #59636e; font-size: 12px; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.row[data-status="failed"] .detail, .row[data-status="timed_out"] .detail,
.row[data-status="error"] .detail { color: #cf222e; }
.legend { margin-top: 16px; color: #59636e; font-size: 12px; }
.key { margin-right: 14px; white-space: nowrap; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  vertical-align: -2px; margin-right: 4px; }
.swatch.critical { outline: 3px solid #0969da; outline-offset: -3px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{heading}</h1>
<p class="meta">{meta}</p>
<div class="chart">
{rows}
</div>
<p class="legend">{legend}</p>
</body>
</html>
"""
