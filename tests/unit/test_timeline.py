"""`--timeline`: one bar per attempt on the run's time axis, the critical path outlined.

The page is also opened in headless Chromium by tests/integration/test_reports.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from parapipe.model import Status
from parapipe.reporters.timeline import TimelineReporter, bars, critical_path, timeline_html
from tests.helpers.report_samples import drive, sample_run


class Elements(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def elements(text: str, css_class: str) -> list[dict[str, str]]:
    parser = Elements()
    parser.feed(text)
    return [a for _, a in parser.found if css_class in a.get("class", "").split()]


def test_bars_one_per_attempt_from_the_start_of_the_run(tmp_path: Path) -> None:
    info, result = sample_run(tmp_path)
    found = [(b.row, b.start, b.duration, b.status) for b in bars(result, info.steps)]
    assert found == [
        ("[image]", 0.0, 2.0, Status.PASSED),
        ("build", 2.0, 3.0, Status.PASSED),
        ("lint", 5.0, 1.0, Status.FAILED),
        ("unit", 5.0, 4.0, Status.FAILED),
        ("flaky", 5.0, 1.0, Status.FAILED),
        ("flaky", 6.5, 2.0, Status.PASSED),
    ]


def test_the_critical_path_is_the_chain_the_last_step_waited_on() -> None:
    spans = {"a": (0.0, 1.0), "b": (0.0, 3.0), "c": (3.0, 4.0), "d": (1.0, 2.0)}
    needs = {"a": (), "b": (), "c": ("a", "b"), "d": ("a",)}
    assert critical_path(spans, needs) == ["b", "c"]
    assert critical_path({}, needs) == []
    # A need that did not run (unchanged, say) is not on it.
    assert critical_path({"c": (0.0, 1.0)}, needs) == ["c"]


def test_the_page_draws_the_bars_coloured_by_status_and_outlines_the_critical_path(
    tmp_path: Path,
) -> None:
    info, result = sample_run(tmp_path)
    path = tmp_path / "timeline.html"
    drive(TimelineReporter(path), info, result)
    text = path.read_text()
    drawn = elements(text, "bar")
    assert len(drawn) == 6
    unit = next(b for b in drawn if b["data-status"] == "failed" and "width:40.000%" in b["style"])
    assert "left:50.000%" in unit["style"]  # 5 s into a 10 s run
    assert "#cf222e" in unit["style"]
    assert "critical" in unit["class"]
    critical_rows = [
        row["data-step"] for row in elements(text, "critical") if "row" in row["class"]
    ]
    assert critical_rows == ["[image]", "build", "unit"]
    rows = {
        row["data-step"]: row["data-status"] for row in elements(text, "row") if "data-step" in row
    }
    assert rows["docs"] == "unchanged"
    assert rows["package"] == "skipped"


def test_the_page_is_self_contained_and_escapes_what_it_shows(tmp_path: Path) -> None:
    info, result = sample_run(tmp_path)
    text = timeline_html(result, info.needs, info.steps)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)
    assert "<script" not in text
    assert "needs &#x27;unit&#x27;, which failed" in text
