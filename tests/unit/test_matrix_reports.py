"""Reports group a matrix step's instances under their step: graph, summary, JUnit, JSON,
timeline and the GitHub job summary."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from parapipe.graph import render, select_steps
from parapipe.model import RunInfo, RunResult, Status, StepResult
from parapipe.reporters.github_summary import summary_markdown
from parapipe.reporters.json_report import report_record
from parapipe.reporters.junit import junit_xml
from parapipe.reporters.summary import plain_summary_lines
from parapipe.reporters.timeline import timeline_html
from parapipe.spec.load import load_pipeline

T0 = 1_790_000_000.0
A, B = "test[SHARD=0,PY=3.11]", "test[SHARD=1,PY=3.11]"
ORDER = ("lint", A, "other", B, "report")  # a topological order may interleave instances
NEEDS = {"lint": (), A: ("lint",), "other": (), B: ("lint",), "report": (A, B)}


@pytest.fixture
def run(tmp_path: Path) -> tuple[RunInfo, RunResult]:
    def step(name: str, status: Status, start: float = 0.0) -> StepResult:
        return StepResult(name=name, status=status, started_at=T0 + start, duration=1.0)

    steps = {
        "lint": step("lint", Status.PASSED),
        A: step(A, Status.PASSED, 1),
        "other": step("other", Status.PASSED),
        B: step(B, Status.FAILED, 1),
        "report": StepResult(name="report", status=Status.SKIPPED, reason="test failed"),
    }
    info = RunInfo(
        run_id="r1",
        pipeline="ci",
        spec_path=tmp_path / "ci.yaml",
        engine="docker",
        engine_reason="",
        steps=ORDER,
        needs=NEEDS,
        jobs=2,
        run_dir=tmp_path,
    )
    result = RunResult(
        run_id="r1",
        pipeline="ci",
        engine="docker",
        run_dir=tmp_path,
        started_at=T0,
        duration=3.0,
        image=None,
        steps=steps,
    )
    return info, result


def test_the_summary_shows_instances_under_a_heading_of_their_step(
    run: tuple[RunInfo, RunResult],
) -> None:
    _, result = run
    rows = [line.rstrip() for line in plain_summary_lines(result, ORDER)[1:6]]
    assert rows[0].split() == ["step", "status", "duration", "detail"]
    assert rows[1].split() == ["lint", "passed", "1.0s"]
    assert rows[2].split() == ["test", "matrix", "of", "2:", "1", "passed,", "1", "failed"]
    assert rows[3].split() == ["[SHARD=0,PY=3.11]", "passed", "1.0s"]
    assert rows[3].startswith("    [SHARD=0")  # indented under `test`
    assert rows[4].split() == ["[SHARD=1,PY=3.11]", "failed", "1.0s"]


def test_junit_json_timeline_and_github_summary_group_the_instances(
    run: tuple[RunInfo, RunResult],
) -> None:
    info, result = run
    cases = ET.fromstring(junit_xml(result, ORDER)).iter("testcase")
    assert [(c.get("name"), c.get("classname")) for c in cases] == [
        ("lint", "ci"),
        (A, "ci.test"),
        (B, "ci.test"),
        ("other", "ci"),
        ("report", "ci"),
    ]
    record = report_record(result, info)
    assert [(s["name"], s["matrix"]) for s in record["steps"]][1:3] == [
        (A, {"step": "test", "values": {"SHARD": "0", "PY": "3.11"}}),
        (B, {"step": "test", "values": {"SHARD": "1", "PY": "3.11"}}),
    ]
    assert record["steps"][0]["matrix"] is None
    json.dumps(record)
    page = timeline_html(result, NEEDS, ORDER)
    rows = [line for line in page.splitlines() if 'data-step="' in line]
    assert [r.split('data-step="')[1].split('"')[0] for r in rows][:4] == ["lint", "test", A, B]
    assert "matrix of 2: 1 passed, 1 failed" in page
    markdown = summary_markdown(result, ORDER, NEEDS)
    assert "| `test` | | | | matrix of 2: 1 passed, 1 failed |" in markdown
    assert "| ↳ `[SHARD=1,PY=3.11]` | ❌ failed |" in markdown
    assert 'subgraph m1["test"]' in markdown


def test_graph_groups_instances_and_reads_a_need_of_them_all_as_the_step(tmp_path: Path) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text(
        textwrap.dedent("""
        image: {from: busybox}
        steps:
          lint: {run: "true"}
          test: {run: "true", needs: [lint], matrix: {SHARD: [0, 1]}}
          other: {run: "true"}
          report: {run: "true", needs: [test, other]}
        """)
    )
    pipeline = load_pipeline(spec)
    assert render(pipeline, select_steps(pipeline, []), "text") == textwrap.dedent("""\
        ci: 5 steps
          lint
          other
          test         needs lint
            [SHARD=0]
            [SHARD=1]
          report       needs test, other
        """)
    one = select_steps(pipeline, ["test[SHARD=1]"], with_needs=False)
    assert render(pipeline, one, "text") == "ci: 1 step\n  test         needs lint\n    [SHARD=1]\n"
    dot = render(pipeline, select_steps(pipeline, []), "dot")
    assert 'subgraph "cluster_0" { label="test";' in dot
