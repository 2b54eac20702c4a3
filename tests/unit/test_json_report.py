"""`--report`: a JSON record of the run that follows its documented schema."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from parapipe.reporters.json_report import JsonReporter, report_record
from tests.helpers.report_samples import T0, drive, sample_run

SCHEMA_PATH = Path(__file__).parent.parent.parent / "docs" / "report-schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_the_report_follows_the_documented_schema(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    info, result = sample_run(tmp_path)
    path = tmp_path / "out" / "report.json"
    drive(JsonReporter(path), info, result)
    record = json.loads(path.read_text())
    validator.validate(record)
    assert record["exit_code"] == 1
    assert record["image"]["id"] == "sha256:" + "1" * 64
    assert record["started_at"] == "2026-09-21T14:13:20.000+00:00"
    steps = {step["name"]: step for step in record["steps"]}
    assert list(steps) == list(info.steps)
    assert steps["package"]["needs"] == ["lint", "unit", "flaky"]


def test_steps_carry_status_attempts_times_and_cache(tmp_path: Path) -> None:
    info, result = sample_run(tmp_path)
    steps = {s["name"]: s for s in report_record(result, info)["steps"]}
    flaky: dict[str, Any] = steps["flaky"]
    assert flaky["status"] == "passed"
    assert flaky["attempts"] == 2
    assert flaky["max_attempts"] == 2
    assert [a["status"] for a in flaky["attempt_results"]] == ["failed", "passed"]
    assert flaky["finished_at"] == "2026-09-21T14:13:28.500+00:00"  # end of the last attempt
    assert flaky["duration"] == 3.0
    assert flaky["cache"] == "miss"
    assert steps["docs"]["status"] == "unchanged"
    assert steps["docs"]["status_text"] == "skipped (no matching change)"
    assert steps["docs"]["ok"] is True
    assert steps["docs"]["attempts"] == 0
    assert steps["docs"]["cache"] is None
    assert steps["lint"]["status"] == "allowed_failure"
    assert steps["lint"]["ok"] is False
    assert steps["unit"]["exit_code"] == 1
    assert steps["unit"]["log"].endswith("unit.log")
    assert steps["package"]["started_at"] is None


def test_a_run_that_needed_no_image_and_was_interrupted(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    info, result = sample_run(tmp_path)
    record = report_record(replace(result, image=None, signal=2, started_at=T0), info)
    validator.validate(record)
    assert record["image"] is None
    assert record["interrupted_by"] == "SIGINT"
    assert record["exit_code"] == 130


def test_the_schema_rejects_what_it_should(validator: jsonschema.Draft202012Validator) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"schema_version": 2})
