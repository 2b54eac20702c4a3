"""The GitHub Actions job summary: a Markdown table of the steps and a Mermaid chart of the DAG,
appended to `$GITHUB_STEP_SUMMARY` when the run ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from parapipe.graph import mermaid_lines
from parapipe.model import RunInfo, RunResult, Status, StepResult
from parapipe.reporters.base import Reporter
from parapipe.reporters.report_file import ReportError
from parapipe.reporters.summary import (
    count_line,
    describe_image,
    exit_line,
    format_duration,
    matrix_tally,
    ordered_steps,
    step_detail,
    summary_rows,
)

_ICONS = {
    Status.PASSED: "✅",
    Status.CACHED: "♻️",
    Status.UNCHANGED: "⏭️",
    Status.FAILED: "❌",
    Status.TIMED_OUT: "⏱️",
    Status.ALLOWED_FAILURE: "⚠️",
    Status.ERROR: "💥",
    Status.SKIPPED: "⏭️",
    Status.CANCELLED: "🚫",
    Status.INTERRUPTED: "🛑",
    Status.QUEUED: "⏸️",
    Status.RUNNING: "▶️",
}
_MERMAID_CLASSES = {
    "ok": "fill:#dafbe1,stroke:#1a7f37",
    "bad": "fill:#ffebe9,stroke:#cf222e",
    "warn": "fill:#fff8c5,stroke:#9a6700",
    "off": "fill:#f6f8fa,stroke:#afb8c1",
}


class GitHubSummary(Reporter):
    """Appends the run's Markdown summary to `$GITHUB_STEP_SUMMARY` when the run ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._order: Sequence[str] = ()
        self._needs: dict[str, tuple[str, ...]] = {}

    def run_started(self, info: RunInfo) -> None:
        self._order = tuple(info.steps)
        self._needs = dict(info.needs)

    def run_finished(self, result: RunResult) -> None:
        # Appended, as GitHub asks: the job's other steps write to the same file.
        try:
            with self.path.open("a", encoding="utf-8") as file:
                file.write(summary_markdown(result, self._order, self._needs))
        except OSError as exc:
            raise ReportError(f"$GITHUB_STEP_SUMMARY {self.path}: cannot write it ({exc})") from exc


def summary_markdown(
    result: RunResult, order: Sequence[str], needs: Mapping[str, Sequence[str]]
) -> str:
    ok = result.exit_code == 0
    lines = [
        f"### {'✅' if ok else '❌'} parapipe: pipeline `{_cell(result.pipeline)}`",
        "",
        f"{_cell(count_line(result))} · {_cell(exit_line(result))}",
        "",
    ]
    if result.image is not None:
        lines += [f"Image: {_cell(describe_image(result.image))}", ""]
    lines += ["| step | status | duration | cache | detail |", "|---|---|---:|---|---|"]
    for row in summary_rows(ordered_steps(result, order)):
        step = row.result
        if step is None:  # a matrix step, its instances in the rows under it
            lines.append(f"| `{_cell(row.label)}` | | | | {_cell(matrix_tally(row.instances))} |")
            continue
        label = f"↳ `{_cell(row.label)}`" if row.under_heading else f"`{_cell(row.label)}`"
        lines.append(
            f"| {label} | {_ICONS[step.status]} {_cell(step.status.value)} "
            f"| {format_duration(step.duration)} | {_cache(step)} | {_cell(step_detail(step))} |"
        )
    lines += ["", "```mermaid", *_mermaid(result, order, needs), "```", ""]
    lines += [
        f"Run `{result.run_id}` on {result.engine}; logs in `{_cell(str(result.run_dir))}`.",
        "",
    ]
    return "\n".join(lines) + "\n"


def _cache(step: StepResult) -> str:
    if step.status is Status.CACHED:
        return "hit"
    return "miss" if step.started_at is not None else ""


def _mermaid(
    result: RunResult, order: Sequence[str], needs: Mapping[str, Sequence[str]]
) -> list[str]:
    steps = ordered_steps(result, order)
    lines = mermaid_lines(
        {step.name: needs.get(step.name, ()) for step in steps},
        labels={
            s.name: f"{s.name}<br/>{s.status.value} {format_duration(s.duration)}" for s in steps
        },
        classes={step.name: _tone(step.status) for step in steps},
    )
    lines.extend(f"    classDef {name} {style}" for name, style in _MERMAID_CLASSES.items())
    return lines


def _tone(status: Status) -> str:
    if status.ok:
        return "ok"
    if status.failed or status is Status.ERROR:
        return "bad"
    if status is Status.ALLOWED_FAILURE:
        return "warn"
    return "off"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: no pipes, no line breaks, no HTML."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def summary_path(environ: Mapping[str, str]) -> Path | None:
    value = environ.get("GITHUB_STEP_SUMMARY", "")
    return Path(value) if value else None
