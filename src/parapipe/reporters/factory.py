"""Choose a reporter for `--output auto|tty|plain|quiet|github` and the stream it writes to,
plus the report writers and, on GitHub Actions, the annotations and the job summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from parapipe.errors import UsageError
from parapipe.model import OUTPUT_MODES, Pipeline
from parapipe.reporters.base import Reporter
from parapipe.reporters.github import is_github_actions
from parapipe.run.state.history import load_durations

if TYPE_CHECKING:
    from parapipe.reporters.github import SourceMap

# The reporters are imported when chosen: a run that shows plain lines and writes no report
# does not pay for the others' imports (rich's live display, XML), and an unchanged re-run is
# mostly Python starting.

MODES = OUTPUT_MODES


@dataclass(frozen=True, kw_only=True)
class ReportPaths:
    junit: Path | None = None  # --junit
    report: Path | None = None  # --report
    timeline: Path | None = None  # --timeline


def make_reporters(
    mode: str,
    stream: TextIO | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    pipeline: Pipeline | None = None,
    reports: ReportPaths = ReportPaths(),
) -> list[Reporter]:
    """The view for `mode` (see `make_view`), plus a writer for each report asked for and, when
    `GITHUB_ACTIONS=true`, the annotations and the job summary: the run's subscribers."""
    stream = sys.stdout if stream is None else stream
    env = os.environ if environ is None else environ
    durations = load_durations(pipeline.state_dir, pipeline.name) if pipeline else None
    view = make_view(mode, stream, environ=env, durations=durations)
    extra: list[Reporter] = []
    if is_github_actions(env):
        from parapipe.reporters.github import GitHubAnnotations
        from parapipe.reporters.github_summary import GitHubSummary, summary_path

        extra.append(GitHubAnnotations(stream, _source_map(pipeline)))
        summary = summary_path(env)
        if summary is not None:
            extra.append(GitHubSummary(summary))
    if reports.junit is not None:
        from parapipe.reporters.junit import JUnitReporter

        extra.append(JUnitReporter(reports.junit))
    if reports.report is not None:
        from parapipe.reporters.json_report import JsonReporter

        extra.append(JsonReporter(reports.report))
    if reports.timeline is not None:
        from parapipe.reporters.timeline import TimelineReporter

        extra.append(TimelineReporter(reports.timeline))
    # The view first: a report that cannot be written must not keep the summary off screen.
    return [view, *extra]


def _source_map(pipeline: Pipeline | None) -> SourceMap | None:
    from parapipe.reporters.github import SourceMap

    if pipeline is None:
        return None
    return SourceMap(
        workdir=pipeline.image.workdir,
        source=pipeline.image.source,
        repo_root=pipeline.project_root,
    )


def make_view(
    mode: str,
    stream: TextIO | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    durations: Mapping[str, float] | None = None,
) -> Reporter:
    """The reporter that shows the run for `mode`, writing to `stream` (stdout by default).

    `auto` is `github` when `GITHUB_ACTIONS=true`, else the live view when the stream is a
    terminal that is not `TERM=dumb`, else plain lines. `NO_COLOR` (set and not empty, per
    no-color.org) turns colour off in the live view, whose ETA comes from `durations`.
    """
    stream = sys.stdout if stream is None else stream
    env = os.environ if environ is None else environ
    if mode not in MODES:
        raise UsageError(f"unknown output mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "auto" and is_github_actions(env):
        mode = "github"
    if mode == "auto":
        mode = "tty" if is_interactive(stream, env) else "plain"
    if mode == "github":
        from parapipe.reporters.github import GitHubLogReporter

        return GitHubLogReporter(stream)
    if mode in ("plain", "quiet"):
        from parapipe.reporters.plain import PlainReporter, QuietReporter

        return PlainReporter(stream) if mode == "plain" else QuietReporter(stream)
    from rich.console import Console

    from parapipe.reporters.live import LiveReporter

    console = Console(
        file=stream,
        force_terminal=True,  # `tty` asked for explicitly, or `auto` found a terminal
        no_color=env.get("NO_COLOR", "") != "",
        highlight=False,
    )
    return LiveReporter(console, durations=durations)


def is_interactive(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether `stream` is a terminal able to redraw lines."""
    if environ.get("TERM", "") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
