"""Reporters driven by a scripted run, writing to in-memory streams."""

from __future__ import annotations

import io
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from parapipe.errors import UsageError
from parapipe.model import ImageResult, RunInfo, RunResult, Status, StepResult
from parapipe.reporters.base import Reporter
from parapipe.reporters.factory import make_reporters
from parapipe.reporters.live import LiveReporter
from parapipe.reporters.plain import PlainReporter, QuietReporter
from parapipe.reporters.summary import (
    count_line,
    exit_line,
    format_duration,
    output_lines,
    plain_summary_lines,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RUN_DIR = Path("/tmp/parapipe-test/runs/r1")
TEST_LOG = RUN_DIR / "unit-tests.log"

INFO = RunInfo(
    run_id="r1",
    pipeline="ci",
    spec_path=Path("pipelines/ci.yaml"),
    engine="docker",
    engine_reason="docker answered first",
    steps=("lint", "unit-tests", "docs"),
    needs={"lint": (), "unit-tests": (), "docs": ("unit-tests",)},
    jobs=2,
    run_dir=RUN_DIR,
)
IMAGE = ImageResult(
    tag="parapipe/ci:abc123", status=Status.PASSED, image_id="sha256:1", duration=1.3
)
LINT = StepResult(name="lint", status=Status.PASSED, exit_code=0, duration=0.4)
UNIT_TESTS = StepResult(
    name="unit-tests",
    status=Status.FAILED,
    exit_code=1,
    duration=12.3,
    log_path=TEST_LOG,
    reason="exit code 1",
)
DOCS = StepResult(name="docs", status=Status.SKIPPED, reason="needs unit-tests, which failed")
RESULT = RunResult(
    run_id="r1",
    pipeline="ci",
    engine="docker",
    run_dir=RUN_DIR,
    started_at=0.0,
    duration=14.0,
    image=IMAGE,
    # Not in run order, to show the summary follows RunInfo.steps.
    steps={"docs": DOCS, "unit-tests": UNIT_TESTS, "lint": LINT},
)


def drive(reporter: Reporter) -> None:
    """A run of two steps printing at the same time, one failing, and one skipped after it."""
    reporter.run_started(INFO)
    reporter.image_started("parapipe/ci")
    reporter.image_output("#1 load build definition")
    reporter.image_finished(IMAGE)
    reporter.step_started("lint")
    reporter.step_started("unit-tests")
    for i in range(30):
        reporter.step_output("lint", f"lint line {i}")
        reporter.step_output("unit-tests", f"test line {i}\n")
    reporter.step_finished(LINT)
    reporter.step_finished(UNIT_TESTS)
    reporter.step_finished(DOCS)
    reporter.run_finished(RESULT)
    reporter.close()


class RecordingStream(io.StringIO):
    """Remembers every write call, and how many writes each flush followed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.unflushed = 0
        self.most_unflushed = 0

    def write(self, s: str) -> int:
        self.writes.append(s)
        self.unflushed += 1
        self.most_unflushed = max(self.most_unflushed, self.unflushed)
        return super().write(s)

    def flush(self) -> None:
        self.unflushed = 0
        super().flush()


# --- plain -------------------------------------------------------------------------------


def test_plain_writes_each_line_whole_in_one_call_and_flushes_it() -> None:
    stream = RecordingStream()
    drive(PlainReporter(stream))
    assert stream.writes
    for chunk in stream.writes:
        assert chunk.endswith("\n")
        assert chunk.count("\n") == 1
    assert stream.most_unflushed == 1


def test_plain_prefixes_step_lines_with_the_name_padded_to_the_longest() -> None:
    stream = io.StringIO()
    drive(PlainReporter(stream))
    lines = stream.getvalue().splitlines()
    for i in range(30):
        assert f"lint       | lint line {i}" in lines
        assert f"unit-tests | test line {i}" in lines
    # The two steps' lines stay interleaved as they arrived, each one whole.
    first_lint = lines.index("lint       | lint line 0")
    assert lines[first_lint + 1] == "unit-tests | test line 0"


def test_plain_first_line_names_pipeline_engine_reason_run_and_logs() -> None:
    stream = io.StringIO()
    drive(PlainReporter(stream))
    first = stream.getvalue().splitlines()[0]
    for part in ("ci", "pipelines/ci.yaml", "docker", "docker answered first", "r1"):
        assert part in first
    assert str(RUN_DIR) in first


def test_plain_status_lines() -> None:
    stream = io.StringIO()
    drive(PlainReporter(stream))
    lines = stream.getvalue().splitlines()
    assert "[image]    | preparing parapipe/ci" in lines
    assert "[image]    | built parapipe/ci:abc123 in 1.3s" in lines
    assert "lint       | started" in lines
    assert "lint       | passed in 0.4s" in lines
    assert f"unit-tests | failed in 12.3s: exit code 1 (log: {TEST_LOG})" in lines
    assert "docs       | skipped: needs unit-tests, which failed" in lines
    assert "[image]    | #1 load build definition" not in lines  # shown only when it fails


def test_plain_has_no_escape_codes() -> None:
    stream = io.StringIO()
    drive(PlainReporter(stream))
    assert "\x1b" not in stream.getvalue()


def test_plain_summary_counts_and_exit() -> None:
    stream = io.StringIO()
    drive(PlainReporter(stream))
    text = stream.getvalue()
    assert "1 passed, 1 failed, 1 skipped in 14.0s" in text
    assert "exit 1: a step did not pass" in text
    assert f"logs: {RUN_DIR}" in text
    table = [line.split() for line in text.splitlines() if line.startswith("  ")]
    assert [row[:2] for row in table] == [
        ["step", "status"],
        ["lint", "passed"],
        ["unit-tests", "failed"],
        ["docs", "skipped"],
    ]


def test_plain_image_failure_shows_the_tail_of_its_output() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.run_started(INFO)
    reporter.image_started("parapipe/ci")
    for i in range(50):
        reporter.image_output(f"build line {i}")
    reporter.image_finished(
        ImageResult(
            tag="parapipe/ci:abc123",
            status=Status.FAILED,
            duration=3.0,
            log_path=RUN_DIR / "image.log",
            reason="setup command 2 exited 127",
        )
    )
    reporter.close()
    lines = stream.getvalue().splitlines()
    assert (
        "[image]    | build of parapipe/ci:abc123 failed after 3.0s: "
        f"setup command 2 exited 127 (log: {RUN_DIR / 'image.log'})"
    ) in lines
    assert "[image]    | build line 49" in lines
    assert "[image]    | build line 30" in lines
    assert "[image]    | build line 29" not in lines


def test_plain_close_is_idempotent_even_on_a_closed_stream() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.run_started(INFO)
    stream.close()
    reporter.close()
    reporter.close()


class BrokenPipeStream(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_plain_keeps_going_when_the_reader_goes_away() -> None:
    drive(PlainReporter(BrokenPipeStream()))  # `parapipe run | head`: no error reaches the run


# --- quiet -------------------------------------------------------------------------------


def test_quiet_shows_only_failures_with_their_last_lines_then_the_summary() -> None:
    stream = io.StringIO()
    drive(QuietReporter(stream))
    text = stream.getvalue()
    lines = text.splitlines()
    assert "lint line" not in text
    assert "started" not in text
    assert "ci (pipelines/ci.yaml)" not in text
    assert f"unit-tests | failed in 12.3s: exit code 1 (log: {TEST_LOG})" in lines
    assert [line for line in lines if "test line" in line] == [
        f"unit-tests | test line {i}" for i in range(10, 30)
    ]
    assert "1 passed, 1 failed, 1 skipped in 14.0s" in text
    assert "\x1b" not in text


# --- live --------------------------------------------------------------------------------


def live_console(width: int = 100, height: int = 25) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=width, height=height), out


def plain_text(out: io.StringIO) -> str:
    return ANSI.sub("", out.getvalue())


@pytest.fixture
def live() -> Iterator[tuple[LiveReporter, io.StringIO]]:
    console, out = live_console()
    # So rarely that only the final frame is drawn, which keeps the output deterministic.
    reporter = LiveReporter(console, refresh_per_second=0.01)
    yield reporter, out
    reporter.close()


def test_live_prints_a_failure_tail_under_a_header_naming_step_and_log(
    live: tuple[LiveReporter, io.StringIO],
) -> None:
    reporter, out = live
    drive(reporter)
    text = plain_text(out)
    header = f"✗ unit-tests failed in 12.3s: exit code 1 (log: {TEST_LOG})"
    lines = text.splitlines()
    start = lines.index(header) + 1
    block = lines[start : start + 21]
    assert block[:20] == [f"│ test line {i}" for i in range(10, 30)]
    assert not block[20].startswith("│")


def test_live_summary_is_a_table_with_counts_and_log_folder(
    live: tuple[LiveReporter, io.StringIO],
) -> None:
    reporter, out = live
    drive(reporter)
    text = plain_text(out)
    summary = text[text.rindex("pipeline ci, run r1, engine docker") :]
    assert re.search(r"│ lint\s+│ passed\s+│\s+0\.4s │", summary)
    assert re.search(r"│ unit-tests\s+│ failed\s+│\s+12\.3s │ exit code 1", summary)
    assert re.search(r"│ docs\s+│ skipped\s+│\s+- │ needs unit-tests", summary)
    assert "1 passed, 1 failed, 1 skipped in 14.0s" in summary
    assert "exit 1: a step did not pass" in summary
    assert f"logs: {RUN_DIR}" in summary
    assert summary.index("lint") < summary.index("unit-tests") < summary.index("docs")


def test_live_first_lines_name_the_run(live: tuple[LiveReporter, io.StringIO]) -> None:
    reporter, out = live
    drive(reporter)
    first, second = plain_text(out).splitlines()[:2]
    assert "pipeline ci" in first
    assert "docker (docker answered first)" in first
    assert "run r1" in first
    assert second == f"logs: {RUN_DIR}"


def test_live_close_is_idempotent_and_leaves_the_last_state_after_an_exception(
    live: tuple[LiveReporter, io.StringIO],
) -> None:
    reporter, out = live
    stdout = sys.stdout
    with pytest.raises(RuntimeError, match="boom"):  # noqa: PT012 - the failure is mid-run
        try:
            reporter.run_started(INFO)
            reporter.step_started("lint")
            reporter.step_output("lint", "checking things")
            assert sys.stdout is not stdout  # rich redirects prints above the live rows
            raise RuntimeError("boom")
        finally:
            reporter.close()
    reporter.close()
    assert sys.stdout is stdout
    frozen = plain_text(out).splitlines()
    assert any(re.fullmatch(r"▸ lint +\d+\.\ds checking things *", line) for line in frozen)
    assert any(re.fullmatch(r"· docs +after unit-tests *", line) for line in frozen)


def test_live_shows_step_output_as_text_not_markup_or_raw_escapes(
    live: tuple[LiveReporter, io.StringIO],
) -> None:
    reporter, out = live
    reporter.run_started(INFO)
    reporter.step_started("unit-tests")
    reporter.step_output("unit-tests", "[bold]not markup[/bold]")
    reporter.step_output("unit-tests", "\x1b[31mred\x1b[0m text")
    reporter.step_finished(UNIT_TESTS)
    lines = plain_text(out).splitlines()
    assert "│ [bold]not markup[/bold]" in lines
    assert "│ red text" in lines
    assert "\x1b[31m" in out.getvalue()  # the step's colour survives, as a real escape


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def render_lines(reporter: LiveReporter, width: int) -> list[str]:
    console, out = live_console(width=width)
    console.print(reporter.render(frozen=True))
    return plain_text(out).splitlines()


def test_live_rows_tick_truncate_and_show_what_a_queued_step_waits_for() -> None:
    console, _ = live_console(width=60)
    clock = FakeClock()
    reporter = LiveReporter(console, clock=clock, refresh_per_second=0.01)
    try:
        reporter.run_started(INFO)
        reporter.step_started("unit-tests")
        reporter.step_output("unit-tests", "x" * 300)
        reporter.step_finished(LINT)
        clock.now += 2.5
        lines = render_lines(reporter, width=60)
        clock.now += 60
        later = render_lines(reporter, width=60)
    finally:
        reporter.close()
    assert len(lines) == 3
    assert all(len(line) <= 60 for line in lines)
    assert re.fullmatch(r"✓ lint +0\.4s *", lines[0])
    assert re.fullmatch(r"▸ unit-tests +2\.5s x+…", lines[1])
    assert re.fullmatch(r"· docs +after unit-tests *", lines[2])
    assert re.fullmatch(r"▸ unit-tests +1m02s x+…", later[1])


def test_live_shows_statuses_with_their_reasons() -> None:
    console, _ = live_console()
    reporter = LiveReporter(console)
    reporter.image_finished(IMAGE)
    reporter.step_finished(DOCS)
    reporter.step_finished(
        StepResult(name="deploy", status=Status.CANCELLED, reason="stopped: lint failed")
    )
    reporter.step_finished(StepResult(name="e2e", status=Status.ERROR, reason="docker: gone"))
    lines = render_lines(reporter, width=100)
    assert re.fullmatch(r"✓ image +1\.3s built parapipe/ci:abc123 in 1\.3s *", lines[0])
    assert re.fullmatch(r"» docs +needs unit-tests, which failed *", lines[1])
    assert re.fullmatch(r"○ deploy +stopped: lint failed *", lines[2])
    assert re.fullmatch(r"! e2e +docker: gone *", lines[3])


def test_live_fits_forty_steps_into_a_short_terminal() -> None:
    console, _ = live_console(height=25)
    reporter = LiveReporter(console)
    names = [f"step-{i:02d}" for i in range(40)]
    for name in names[:30]:
        reporter.step_finished(StepResult(name=name, status=Status.PASSED, duration=1.0))
    for name in names[30:33]:
        reporter.step_started(name)
    for name in names[33:]:
        reporter.step_output(name, "")  # known, still queued
    lines = render_lines(reporter, width=100)
    assert len(lines) == 23  # the terminal's 25 rows, less one for the cursor and one spare
    assert lines[-1] == "… 18 more: 18 passed"
    for name in names[30:]:  # every running and queued step stays visible
        assert any(name in line for line in lines)


# --- factory -----------------------------------------------------------------------------


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("mode", "stream", "environ", "expected"),
    [
        ("auto", io.StringIO(), {"TERM": "xterm"}, PlainReporter),
        ("auto", TerminalStream(), {"TERM": "xterm"}, LiveReporter),
        ("auto", TerminalStream(), {"TERM": "dumb"}, PlainReporter),
        ("tty", io.StringIO(), {}, LiveReporter),
        ("plain", TerminalStream(), {}, PlainReporter),
        ("quiet", TerminalStream(), {}, QuietReporter),
    ],
)
def test_make_reporter_chooses_by_mode_and_terminal(
    mode: str, stream: io.StringIO, environ: dict[str, str], expected: type[Reporter]
) -> None:
    [reporter] = make_reporters(mode, stream, environ=environ)
    assert type(reporter) is expected


@pytest.mark.parametrize(("value", "no_color"), [("1", True), ("", False)])
def test_make_reporter_respects_no_color(value: str, no_color: bool) -> None:
    [reporter] = make_reporters("tty", TerminalStream(), environ={"NO_COLOR": value})
    assert isinstance(reporter, LiveReporter)
    assert reporter.console.no_color is no_color


def test_make_reporter_rejects_an_unknown_mode() -> None:
    with pytest.raises(UsageError, match="unknown output mode 'fancy'"):
        make_reporters("fancy", io.StringIO())


# --- formatting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.04, "0.0s"),
        (0.4, "0.4s"),
        (12.34, "12.3s"),
        (59.96, "1m00s"),
        (123, "2m03s"),
        (3599.6, "1h00m"),
        (3723, "1h02m"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("raw", "lines"),
    [
        ("plain", ["plain"]),
        ("crlf\r\n", ["crlf"]),
        ("10%\r50%\r100%", ["100%"]),
        ("two\nlines\n", ["two", "lines"]),
    ],
)
def test_output_lines(raw: str, lines: list[str]) -> None:
    assert output_lines(raw) == lines


def run_result(*steps: StepResult, signum: int | None = None) -> RunResult:
    return RunResult(
        run_id="r2",
        pipeline="ci",
        engine="podman",
        run_dir=RUN_DIR,
        started_at=0.0,
        duration=125.0,
        image=IMAGE,
        steps={step.name: step for step in steps},
        signal=signum,
    )


def test_summary_names_what_the_exit_code_means() -> None:
    passed = run_result(LINT)
    assert count_line(passed) == "1 passed in 2m05s"
    assert exit_line(passed) == "exit 0: every step passed"
    errors = run_result(
        StepResult(name="a", status=Status.ERROR, reason="docker: gone"),
        StepResult(name="b", status=Status.ERROR, reason="docker: gone"),
        StepResult(name="c", status=Status.CANCELLED),
    )
    assert count_line(errors) == "2 errors, 1 cancelled in 2m05s"
    assert exit_line(errors) == "exit 3: the container engine failed"
    stopped = run_result(
        StepResult(name="a", status=Status.INTERRUPTED, duration=1.0), signum=signal.SIGINT
    )
    assert exit_line(stopped) == "exit 130: interrupted by SIGINT"
    assert count_line(run_result()) == "no steps in 2m05s"


def test_plain_summary_reports_a_failed_image() -> None:
    failed = RunResult(
        run_id="r3",
        pipeline="ci",
        engine="docker",
        run_dir=RUN_DIR,
        started_at=0.0,
        duration=2.0,
        image=ImageResult(tag="parapipe/ci:abc", status=Status.FAILED, reason="setup failed"),
        steps={"lint": StepResult(name="lint", status=Status.SKIPPED, reason="no image")},
    )
    lines = plain_summary_lines(failed, ["lint"])
    assert "image: build of parapipe/ci:abc failed: setup failed" in lines
    assert "exit 1: the image could not be built" in lines
