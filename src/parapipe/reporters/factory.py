"""Choose a reporter for `--output auto|tty|plain|quiet` and the stream it writes to."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from rich.console import Console

from parapipe.errors import UsageError
from parapipe.reporters.base import Reporter
from parapipe.reporters.live import LiveReporter
from parapipe.reporters.plain import PlainReporter, QuietReporter

MODES = ("auto", "tty", "plain", "quiet")


def make_reporter(
    mode: str, stream: TextIO | None = None, *, environ: Mapping[str, str] | None = None
) -> Reporter:
    """The reporter for `mode`, writing to `stream` (stdout by default).

    `auto` is the live view when the stream is a terminal that is not `TERM=dumb`, else plain
    lines. `NO_COLOR` (set and not empty, per no-color.org) turns colour off in the live view.
    """
    stream = sys.stdout if stream is None else stream
    env = os.environ if environ is None else environ
    if mode not in MODES:
        raise UsageError(f"unknown output mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "auto":
        mode = "tty" if is_interactive(stream, env) else "plain"
    if mode == "plain":
        return PlainReporter(stream)
    if mode == "quiet":
        return QuietReporter(stream)
    console = Console(
        file=stream,
        force_terminal=True,  # `tty` asked for explicitly, or `auto` found a terminal
        no_color=env.get("NO_COLOR", "") != "",
        highlight=False,
    )
    return LiveReporter(console)


def is_interactive(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether `stream` is a terminal able to redraw lines."""
    if environ.get("TERM", "") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
