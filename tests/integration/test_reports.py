"""`--junit`, `--report` and `--timeline` from a real run; the timeline opened in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import xmlschema

from tests.helpers.docker import BUSYBOX, remove_pipeline_images
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

ROOT = Path(__file__).parent.parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Measures every bar as laid out, and leaves the numbers in the page for --dump-dom to print.
MEASURE = """<script>
const bars = [...document.querySelectorAll('.bar')].map((bar) => {
  const box = bar.getBoundingClientRect();
  const track = bar.parentElement.getBoundingClientRect();
  const style = getComputedStyle(bar);
  return {
    step: bar.closest('.row').dataset.step, status: bar.dataset.status,
    start: Number(bar.dataset.start), duration: Number(bar.dataset.duration),
    left: box.left - track.left, width: box.width, track: track.width,
    colour: style.backgroundColor, outline: style.outlineWidth + ' ' + style.outlineStyle,
  };
});
const out = document.createElement('pre');
out.id = 'measured';
out.textContent = JSON.stringify(bars);
document.body.appendChild(out);
</script>"""


@pytest.fixture(scope="module")
def report_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Any]]:
    """One run with a pass, a failure with a file location, a retried step and a skip."""
    root = tmp_path_factory.mktemp("reports")
    project = Project(root=root, name=f"test-{uuid.uuid4().hex[:10]}")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("x = 1\n")
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          build: {{run: "sleep 0.3"}}
          check: {{run: ["echo 'src/app.py:1: error: x is wrong'", "exit 2"], needs: [build]}}
          flaky: {{run: '[ "$PARAPIPE_ATTEMPT" = 2 ]', retries: 1, needs: [build]}}
          ship: {{run: "true", needs: [check, flaky]}}
    """)
    reports = root / "out"
    result = project.run(
        "run",
        "-f",
        "ci.yaml",
        "-j",
        "2",
        "--keep-going",
        "--output",
        "plain",
        "--junit",
        str(reports / "junit.xml"),
        "--report",
        str(reports / "report.json"),
        "--timeline",
        str(reports / "timeline.html"),
    )
    yield project, result
    remove_pipeline_images(project.name)
    listed = subprocess.run(
        ["docker", "image", "ls", "-q", f"parapipe/{project.name}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.stdout.split():
        subprocess.run(["docker", "image", "rm", "-f", *set(listed.stdout.split())], check=False)


def test_the_junit_report_is_valid_and_names_the_failure(report_run: tuple[Project, Any]) -> None:
    project, result = report_run
    assert result.exit_code == 1, result.output
    path = project.root / "out" / "junit.xml"
    xmlschema.XMLSchema(ROOT / "tests" / "data" / "junit-10.xsd").validate(str(path))
    suite = ET.parse(path).getroot()
    failure = suite.find(".//testcase[@name='check']/failure")
    assert failure is not None
    assert "src/app.py:1: error: x is wrong" in (failure.text or "")
    assert suite.find(".//testcase[@name='flaky']/failure") is None
    assert suite.find(".//testcase[@name='ship']/skipped") is not None


def test_the_json_report_follows_its_schema_and_counts_attempts(
    report_run: tuple[Project, Any],
) -> None:
    project, _ = report_run
    record = json.loads((project.root / "out" / "report.json").read_text())
    schema = json.loads((ROOT / "docs" / "report-schema.json").read_text())
    jsonschema.validate(record, schema, cls=jsonschema.Draft202012Validator)
    steps = {step["name"]: step for step in record["steps"]}
    assert steps["flaky"]["attempts"] == 2
    assert [a["status"] for a in steps["flaky"]["attempt_results"]] == ["failed", "passed"]
    assert steps["check"]["exit_code"] == 2
    assert record["image"]["id"].startswith("sha256:")
    assert record["run_id"] == project.last_run().name


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium (scripts/setup installs Debian's 'chromium' as root)")


def test_the_timeline_draws_a_bar_per_attempt_in_chromium(
    report_run: tuple[Project, Any], tmp_path: Path
) -> None:
    project, _ = report_run
    page = (project.root / "out" / "timeline.html").read_text()
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(page.replace("</body>", MEASURE + "</body>"))
    done = subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,800",
            "--dump-dom",
            measured_page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, done.stderr[-2000:]
    bars = json.loads(found.group(1).replace("&amp;", "&").replace("&quot;", '"'))
    by_step: dict[str, list[dict[str, Any]]] = {}
    for bar in bars:
        by_step.setdefault(bar["step"], []).append(bar)
    assert set(by_step) == {"[image]", "build", "check", "flaky"}  # `ship` never ran
    assert [b["status"] for b in by_step["flaky"]] == ["failed", "passed"]
    for bar in bars:
        assert bar["width"] >= 2
        assert bar["left"] + bar["width"] <= bar["track"] + 1
    # Drawn where they ran: the first attempt of flaky ends before its second starts...
    first, second = by_step["flaky"]
    assert first["left"] + first["width"] <= second["left"] + 1
    # ...and nothing that needs build starts left of build's end.
    (build,) = by_step["build"]
    for name in ("check", "flaky"):
        assert by_step[name][0]["left"] >= build["left"] + build["width"] - 1
    (check,) = by_step["check"]
    assert check["colour"] == "rgb(207, 34, 46)"  # failed is red
    assert second["colour"] == "rgb(45, 164, 78)"  # passed is green
    # The critical path: the image, build, then whichever of check and flaky ended last.
    outlined = {b["step"] for b in bars if b["outline"] == "3px solid"}
    last = max(("check", "flaky"), key=lambda n: by_step[n][-1]["left"] + by_step[n][-1]["width"])
    assert outlined == {"[image]", "build", last}
