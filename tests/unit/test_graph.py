"""`parapipe graph` in its three formats, on a small diamond, through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from parapipe.graph import mermaid_lines

DIAMOND = """\
name: diamond
image: {from: busybox:latest}
steps:
  build: {run: make}
  lint: {run: make lint, needs: [build]}
  test: {run: make test, needs: [build]}
  ship: {run: make ship, needs: [lint, test]}
"""

TEXT = """\
diamond: 4 steps
  build
  lint   needs build
  test   needs build
  ship   needs lint, test
"""

MERMAID = """\
flowchart LR
    s0["build"]
    s1["lint"]
    s2["test"]
    s3["ship"]
    s0 --> s1
    s0 --> s2
    s1 --> s3
    s2 --> s3
"""

DOT = """\
digraph "diamond" {
    rankdir=LR;
    "build";
    "lint";
    "build" -> "lint";
    "test";
    "build" -> "test";
    "ship";
    "lint" -> "ship";
    "test" -> "ship";
}
"""


@pytest.fixture
def diamond(tmp_path: Path) -> Path:
    path = tmp_path / "diamond.yaml"
    path.write_text(DIAMOND)
    return path


def graph(spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parapipe", "graph", "-f", str(spec), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(("fmt", "expected"), [("text", TEXT), ("mermaid", MERMAID), ("dot", DOT)])
def test_graph_prints_the_diamond_in_each_format(diamond: Path, fmt: str, expected: str) -> None:
    done = graph(diamond, "--format", fmt)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == expected


def test_text_is_the_default_format(diamond: Path) -> None:
    assert graph(diamond).stdout == TEXT


def test_named_steps_come_with_what_they_need(diamond: Path) -> None:
    done = graph(diamond, "--format", "mermaid", "lint")
    assert done.stdout == 'flowchart LR\n    s0["build"]\n    s1["lint"]\n    s0 --> s1\n'
    assert graph(diamond, "test").stdout == "diamond: 2 steps\n  build\n  test   needs build\n"


def test_an_unknown_step_is_a_usage_error(diamond: Path) -> None:
    done = graph(diamond, "shp")
    assert done.returncode == 2
    assert "no step named 'shp' (did you mean 'ship'?)" in done.stderr
    assert done.stdout == ""


def test_mermaid_lines_take_labels_and_classes_and_skip_needs_outside() -> None:
    lines = mermaid_lines(
        {"a": (), "b": ("a", "gone")},
        labels={"b": 'say "hi"'},
        classes={"a": "ok"},
    )
    assert lines == [
        "flowchart LR",
        '    s0["a"]:::ok',
        '    s1["say #quot;hi#quot;"]',
        "    s0 --> s1",
    ]
