"""What the report writers share: reading the end of a step's log, writing a report file."""

from __future__ import annotations

import os
import re
from pathlib import Path

from parapipe.errors import ExitCode, ParapipeError
from parapipe.run.state.atomic import write_text_atomically

_TAIL_BYTES = 64 * 1024  # enough for the last lines of any log, without reading a huge one
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


class ReportError(ParapipeError):
    """A report asked for with `--junit`, `--report` or `--timeline` cannot be written."""

    exit_code = ExitCode.USAGE


def log_tail(path: Path | None, lines: int) -> list[str]:
    """The last `lines` lines of a log, without colour codes; [] when there is no log."""
    if path is None:
        return []
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(size - _TAIL_BYTES, 0))
            data = file.read()
    except OSError:
        return []
    text = strip_ansi(data.decode("utf-8", errors="replace"))
    kept = text.splitlines()
    if len(data) == _TAIL_BYTES and kept:
        kept = kept[1:]  # the first line was cut in the middle
    return kept[-lines:] if lines else []


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def check_report_path(path: Path, flag: str) -> None:
    """Fail before the run, not after it, when `path` cannot be a report file."""
    if path.is_dir():
        raise ReportError(f"{flag} {path}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{flag} {path}: cannot create its folder ({exc.strerror})") from exc
    if not os.access(path.parent, os.W_OK):
        raise ReportError(f"{flag} {path}: its folder is not writable")


def write_report(path: Path, text: str, flag: str) -> None:
    """Write `text` to `path` atomically: a reader never sees half a report."""
    try:
        write_text_atomically(path, text)
    except OSError as exc:
        raise ReportError(f"{flag} {path}: cannot write it ({exc.strerror or exc})") from exc
