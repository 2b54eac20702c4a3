"""GitHub Actions: each step's log in a collapsible group, annotations, and the job summary.

- `GitHubLogReporter` (`--output github`, chosen by `auto` when `GITHUB_ACTIONS=true`) prints
  each step's whole log as one `::group::` when the step ends; steps run at the same time, so
  their lines cannot be grouped as they come. Inside a group, workflow commands are switched
  off (`::stop-commands::`): a log line such as `::endgroup::` or `::add-mask::` is shown, not
  obeyed.
- `GitHubAnnotations` adds an `::error` annotation for every failed step (a `::warning` for an
  allowed failure), pointing at the first `path:line:` in its log that names a file of the
  source folder.
- The job summary is in `github_summary.py`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from parapipe.model import ImageResult, RunInfo, RunResult, Status, StepResult
from parapipe.reporters.base import Reporter
from parapipe.reporters.plain import IMAGE_LABEL, PlainReporter
from parapipe.reporters.report_file import log_tail
from parapipe.reporters.summary import (
    describe_image,
    describe_step,
    ordered_steps,
    output_lines,
    step_detail,
)

ANNOTATED_LINES = 200  # how far back in a failed step's log a location is looked for
# `path:line:` or `path:line:col:`, as compilers, linters, type checkers and pytest write them.
_LOCATION = re.compile(
    r"(?P<path>/?(?:[A-Za-z0-9_.@+-]+/)*[A-Za-z0-9_.@+-]+\.[A-Za-z0-9]+)"
    r":(?P<line>\d+)(?::(?P<col>\d+))?:"
)


def is_github_actions(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


# -- workflow commands ---------------------------------------------------------------------------


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(name: str, message: str, **properties: str | int | None) -> str:
    props = ",".join(
        f"{key}={escape_property(str(value))}"
        for key, value in properties.items()
        if value is not None
    )
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


# -- the log -------------------------------------------------------------------------------------


class GitHubLogReporter(PlainReporter):
    """Plain lines for the run, and each step's log folded into a group when it ends."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._logs: dict[str, list[str]] = {}
        self._image_log: list[str] = []

    def image_output(self, line: str) -> None:
        super().image_output(line)
        self._image_log.extend(output_lines(line))

    def image_finished(self, result: ImageResult) -> None:
        self._group(f"{IMAGE_LABEL} {describe_image(result)}", self._image_log)
        self._image_log = []
        self._image_tail.clear()

    def step_output(self, name: str, line: str) -> None:
        self._logs.setdefault(name, []).extend(output_lines(line))

    def step_finished(self, result: StepResult) -> None:
        lines = self._logs.pop(result.name, [])
        if lines:
            self._group(f"{result.name}: {describe_step(result)}", lines)
        else:
            self._line(result.name, describe_step(result))

    def _group(self, title: str, lines: Sequence[str]) -> None:
        token = secrets.token_hex(16)
        self._write(f"::group::{escape_data(title)}")
        self._write(f"::stop-commands::{token}")
        for line in lines:
            self._write(line)
        self._write(f"::{token}::")
        self._write("::endgroup::")


# -- annotations ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SourceMap:
    """Where a path in a step's log is on the host: the container's workdir holds the source
    folder, and GitHub wants paths relative to the repository's root."""

    workdir: str  # e.g. /src
    source: Path  # the host folder copied into workdir
    repo_root: Path  # what annotation paths are relative to


@dataclass(frozen=True, kw_only=True)
class Location:
    path: str  # relative to the repository's root
    line: int
    column: int | None
    text: str  # the log line it was found in


def find_location(lines: Sequence[str], where: SourceMap) -> Location | None:
    """The first `path:line[:col]:` in `lines` that names a file of the source folder. Lines
    echoing a command (`$ ...`) are passed over: the location is in what the command said."""
    for line in lines:
        if line.startswith("$ "):
            continue
        for match in _LOCATION.finditer(line):
            path = match["path"]
            if path.startswith("/"):
                # An absolute path in the container: only one under the workdir is ours.
                workdir = where.workdir.rstrip("/") + "/"
                if not path.startswith(workdir):
                    continue
                path = path[len(workdir) :]
            host = where.source / path
            if not host.is_file():
                continue
            try:
                relative = host.resolve().relative_to(where.repo_root.resolve())
            except ValueError:
                continue
            column = int(match["col"]) if match["col"] else None
            return Location(
                path=relative.as_posix(), line=int(match["line"]), column=column, text=line
            )
    return None


class GitHubAnnotations(Reporter):
    """Annotations for failed steps, written once the run is over (a live view may own the
    terminal until then)."""

    def __init__(self, stream: TextIO, source_map: SourceMap | None) -> None:
        self._stream = stream
        self._source_map = source_map
        self._order: Sequence[str] = ()

    def run_started(self, info: RunInfo) -> None:
        self._order = tuple(info.steps)

    def run_finished(self, result: RunResult) -> None:
        text = "".join(
            f"{line}\n" for line in annotation_lines(result, self._order, self._source_map)
        )
        with suppress(BrokenPipeError):  # nobody reads the log any more
            self._stream.write(text)
            self._stream.flush()


def annotation_lines(
    result: RunResult, order: Sequence[str], source_map: SourceMap | None
) -> list[str]:
    found: list[str] = []
    image = result.image
    if image is not None and image.status is Status.FAILED:
        tail = log_tail(image.log_path, 1)
        message = image.reason or "the image could not be built"
        found.append(workflow_command("error", _with_last_line(message, tail), title="image build"))
    for step in ordered_steps(result, order):
        if not (step.status.failed or step.status in (Status.ERROR, Status.ALLOWED_FAILURE)):
            continue
        lines = log_tail(step.log_path, ANNOTATED_LINES)
        located = find_location(lines, source_map) if source_map is not None else None
        kind = "warning" if step.status is Status.ALLOWED_FAILURE else "error"
        title = f"{step.name} {step.status.value}"
        detail = step_detail(step)
        message = f"{step.status.value}: {detail}" if detail else step.status.value
        if located is None:
            found.append(workflow_command(kind, _with_last_line(message, lines), title=title))
            continue
        found.append(
            workflow_command(
                kind,
                f"{message}\n{located.text.strip()}",
                title=title,
                file=located.path,
                line=located.line,
                col=located.column,
            )
        )
    return found


def _with_last_line(message: str, lines: Sequence[str]) -> str:
    meaningful = [
        line for line in lines if line.strip() and not line.startswith(("parapipe: ", "$ "))
    ]
    return f"{message}\n{meaningful[-1].strip()}" if meaningful else message
