"""`--junit`: valid against the Jenkins/Surefire JUnit schema that CI report tools read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
import xmlschema

from parapipe.model import ImageResult, Status
from parapipe.reporters.junit import JUnitReporter, junit_xml
from parapipe.reporters.report_file import ReportError
from tests.helpers.report_samples import drive, sample_run

# junit-10.xsd: the schema of Jenkins' xunit plugin (MIT), as pytest's own tests use it.
SCHEMA = Path(__file__).parent.parent / "data" / "junit-10.xsd"


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(SCHEMA)


def test_one_testcase_per_step_valid_against_the_schema(
    tmp_path: Path, schema: xmlschema.XMLSchema
) -> None:
    info, result = sample_run(tmp_path)
    path = tmp_path / "reports" / "junit.xml"
    drive(JUnitReporter(path), info, result)
    schema.validate(str(path))
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == list(info.steps)
    assert suite.get("tests") == "6"
    assert suite.get("failures") == "1"
    assert suite.get("errors") == "0"
    assert suite.get("skipped") == "3"  # unchanged, allowed failure, skipped
    assert cases["build"].get("time") == "3.000"
    assert list(cases["build"]) == []
    assert list(cases["flaky"]) == []  # passed on its second attempt
    skipped = cases["docs"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "skipped (no matching change): no changed file matches docs/**"
    lint = cases["lint"].find("skipped")
    assert lint is not None
    assert lint.get("message") == "failed (allowed): exit code 1"


def test_a_failure_holds_the_last_lines_of_the_log_without_colour_or_bad_characters(
    tmp_path: Path,
) -> None:
    info, result = sample_run(tmp_path)
    root = ET.fromstring(junit_xml(result, info.steps))
    failure = root.find(".//testcase[@name='unit']/failure")
    assert failure is not None
    assert failure.get("message") == "failed: exit code 1"
    assert failure.get("type") == "failed"
    text = failure.text or ""
    assert "FAILED tests/test_app.py::test_x" in text  # the escape codes are gone
    assert "x is 1 & <not> 2" in text
    assert "bell \ufffd and nul \ufffd kept out of XML" in text
    assert text.splitlines()[-1] == "parapipe: exit 1"


def test_an_image_that_failed_to_build_is_an_error_not_only_skipped_steps(
    tmp_path: Path, schema: xmlschema.XMLSchema
) -> None:
    info, result = sample_run(tmp_path)
    log = tmp_path / "image.build.log"
    log.write_text("Step 3/4 : RUN pip install\nERROR: no such package\n")
    image = ImageResult(
        tag="parapipe/ci:abc",
        status=Status.FAILED,
        duration=1.0,
        log_path=log,
        reason="setup command failed with exit 1: pip install",
    )
    steps = {
        name: replace(step, status=Status.SKIPPED, reason="the pipeline image failed to build")
        for name, step in result.steps.items()
    }
    text = junit_xml(replace(result, image=image, steps=steps), info.steps)
    schema.validate(text)
    root = ET.fromstring(text)
    error = root.find(".//testcase[@name='[image]']/error")
    assert error is not None
    assert error.get("message") == "setup command failed with exit 1: pip install"
    assert "ERROR: no such package" in (error.text or "")
    assert root.get("errors") == "1"


def test_an_unwritable_path_is_a_report_error(tmp_path: Path) -> None:
    _, result = sample_run(tmp_path)
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(ReportError, match=r"--junit .*cannot write it"):
        JUnitReporter(tmp_path / "taken" / "junit.xml").run_finished(result)
