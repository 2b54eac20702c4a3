"""GitHub Actions: log groups, `::error` annotations pointing at files, the job summary."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

import pytest

from parapipe.model import Status
from parapipe.reporters.factory import ReportPaths, make_reporters
from parapipe.reporters.github import (
    GitHubAnnotations,
    GitHubLogReporter,
    SourceMap,
    annotation_lines,
    find_location,
    workflow_command,
)
from parapipe.reporters.github_summary import GitHubSummary, summary_markdown
from parapipe.reporters.json_report import JsonReporter
from parapipe.reporters.live import LiveReporter
from parapipe.reporters.plain import PlainReporter
from tests.helpers.report_samples import drive, sample_run

ON_GITHUB = {"GITHUB_ACTIONS": "true"}


def test_each_step_log_is_one_group_with_workflow_commands_switched_off(tmp_path: Path) -> None:
    info, result = sample_run(tmp_path)
    unit_log = tmp_path / ".parapipe" / "runs" / "r1" / "unit.log"
    unit_log.write_text(unit_log.read_text() + "::endgroup::\n::add-mask::secret\n")
    out = io.StringIO()
    drive(GitHubLogReporter(out), info, result)
    lines = out.getvalue().splitlines()
    start = lines.index("::group::unit: failed in 4.0s: exit code 1 (log: " + str(unit_log) + ")")
    stop_line = lines[start + 1]
    token = stop_line.removeprefix("::stop-commands::")
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    end = lines.index(f"::{token}::")
    assert lines[end + 1] == "::endgroup::"
    body = lines[start + 2 : end]
    assert body[0] == "$ pytest -q"
    assert "::endgroup::" in body  # shown inside the group, not obeyed: commands are off
    assert body[-1] == "::add-mask::secret"
    # A step that printed nothing gets a plain status line, not an empty group.
    assert "package | skipped: needs 'unit', which failed" in lines
    assert any(line.startswith("::group::[image] ") for line in lines)
    assert lines[-1].startswith("logs: ")  # the summary still ends the log


def test_a_failure_is_annotated_at_the_first_source_location_in_its_log(tmp_path: Path) -> None:
    info, result = sample_run(tmp_path)
    where = SourceMap(workdir="/src", source=tmp_path, repo_root=tmp_path)
    found = annotation_lines(result, info.steps, where)
    assert found[0] == (
        "::warning title=lint failed (allowed)::failed (allowed): exit code 1"
    )  # no log: no location, no last line
    assert found[1] == (
        "::error title=unit failed,file=src/app.py,line=1::"
        "failed: exit code 1%0Asrc/app.py:1: AssertionError: x is 1 & <not> 2"
    )
    assert len(found) == 2  # passed, unchanged and skipped steps get none


def test_locations_are_mapped_from_the_container_to_the_repository(tmp_path: Path) -> None:
    repo = tmp_path
    source = repo / "app"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("")
    where = SourceMap(workdir="/work", source=source, repo_root=repo)
    lines = [
        "$ ruff check pkg/mod.py:9:1:",  # a command line, not what it said
        "/usr/lib/python3.11/x.py:3: in f",  # not a source file
        "missing/file.py:4: nowhere",  # not a file that exists
        "/work/pkg/mod.py:12:5: E501 line too long",
    ]
    location = find_location(lines, where)
    assert location is not None
    assert (location.path, location.line, location.column) == ("app/pkg/mod.py", 12, 5)
    assert find_location(["pkg/mod.py:7: error: bad"], where) is not None
    assert find_location(["no location here"], where) is None


def test_workflow_commands_escape_their_data_and_properties() -> None:
    line = workflow_command("error", "50% done\nnext", title="a:b,c", line=3, col=None)
    assert line == "::error title=a%3Ab%2Cc,line=3::50%25 done%0Anext"


def test_the_job_summary_has_a_table_and_a_mermaid_chart(tmp_path: Path) -> None:
    info, result = sample_run(tmp_path)
    steps = dict(result.steps)
    steps["lint"] = replace(steps["lint"], reason="exit code 1 | <b>")
    text = summary_markdown(replace(result, steps=steps), info.steps, info.needs)
    assert text.startswith("### ❌ parapipe: pipeline `ci`")
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert table[0] == "| `build` | ✅ passed | 3.0s | miss |  |"
    assert table[1] == (
        "| `docs` | ⏭️ skipped (no matching change) | - |  | no changed file matches docs/** |"
    )
    assert "exit code 1 \\| &lt;b&gt;" in table[2]
    chart = text.split("```mermaid\n", 1)[1].split("```", 1)[0].splitlines()
    assert chart[0] == "flowchart LR"
    assert '    s3["unit<br/>failed 4.0s"]:::bad' in chart
    assert "    s3 --> s5" in chart  # unit --> package
    assert "    s0 --> s2" in chart  # build --> lint


def test_the_summary_is_appended_to_the_step_summary_file(tmp_path: Path) -> None:
    info, result = sample_run(tmp_path)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step's summary\n")
    drive(GitHubSummary(summary), info, result)
    text = summary.read_text()
    assert text.startswith("earlier step's summary\n### ❌ parapipe")


def test_auto_is_github_on_actions_with_annotations_summary_and_reports(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {**ON_GITHUB, "GITHUB_STEP_SUMMARY": str(summary)}
    reporters = make_reporters(
        "auto", io.StringIO(), environ=env, reports=ReportPaths(report=tmp_path / "r.json")
    )
    kinds = [type(r) for r in reporters]
    assert kinds == [GitHubLogReporter, GitHubAnnotations, GitHubSummary, JsonReporter]


@pytest.mark.parametrize(
    ("mode", "environ", "expected"),
    [
        ("auto", {}, PlainReporter),
        ("github", {}, GitHubLogReporter),
        ("plain", ON_GITHUB, PlainReporter),
        ("tty", ON_GITHUB, LiveReporter),
    ],
)
def test_the_view_follows_the_mode(mode: str, environ: dict[str, str], expected: type) -> None:
    reporters = make_reporters(mode, io.StringIO(), environ=environ)
    assert type(reporters[0]) is expected
    if environ:
        assert type(reporters[1]) is GitHubAnnotations  # whatever the view
    else:
        assert len(reporters) == 1


def test_annotations_come_after_the_summary(tmp_path: Path) -> None:
    info, result = sample_run(tmp_path)
    out = io.StringIO()
    drive(make_reporters("plain", out, environ=ON_GITHUB), info, result)
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("::error title=unit failed")
    assert lines[-3].startswith("logs: ")
    assert result.steps["unit"].status is Status.FAILED
