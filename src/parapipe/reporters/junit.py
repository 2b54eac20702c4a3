"""`--junit PATH`: the run as JUnit XML, one testcase per step, for CI test-report tools.

The format is the one Jenkins, GitLab, GitHub test-report actions and Surefire read (checked
against the Jenkins/Surefire `junit-10.xsd` in the tests). A failed step carries the last lines
of its log; when the image cannot be built, an extra `[image]` testcase holds that error, so
the report does not read as a run of skipped steps.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from parapipe.model import ImageResult, RunInfo, RunResult, Status, StepResult, split_instance
from parapipe.reporters.base import Reporter
from parapipe.reporters.report_file import log_tail, write_report
from parapipe.reporters.summary import TAIL_LINES, ordered_steps

FLAG = "--junit"
IMAGE_CASE = "[image]"
# Characters XML 1.0 cannot hold at all, not even escaped: a log may contain any of them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_FAILURE = {Status.FAILED, Status.TIMED_OUT}
_ERROR = {Status.ERROR}


class JUnitReporter(Reporter):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._order: Sequence[str] = ()

    def run_started(self, info: RunInfo) -> None:
        self._order = tuple(info.steps)

    def run_finished(self, result: RunResult) -> None:
        write_report(self.path, junit_xml(result, self._order), FLAG)


def junit_xml(result: RunResult, order: Sequence[str] = ()) -> str:
    cases = [_step_case(result.pipeline, step) for step in ordered_steps(result, order)]
    if result.image is not None and result.image.status is Status.FAILED:
        cases.insert(0, _image_case(result.pipeline, result.image))
    failures = sum(1 for case in cases if case.find("failure") is not None)
    errors = sum(1 for case in cases if case.find("error") is not None)
    skipped = sum(1 for case in cases if case.find("skipped") is not None)
    counts = {
        "tests": str(len(cases)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": str(skipped),
        "time": _seconds(result.duration),
    }
    suites = ET.Element("testsuites", {"name": f"parapipe {result.pipeline}", **counts})
    del suites.attrib["skipped"]  # not an attribute of <testsuites> in the schema
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": result.pipeline,
            **counts,
            "timestamp": datetime.fromtimestamp(result.started_at, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S"
            ),
            "hostname": _clean(socket.gethostname()),
            "id": result.run_id,
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run_id", result.run_id), ("engine", result.engine)):
        ET.SubElement(properties, "property", {"name": name, "value": _clean(value)})
    if result.image is not None and result.image.image_id:
        ET.SubElement(properties, "property", {"name": "image", "value": result.image.image_id})
    suite.extend(cases)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _step_case(pipeline: str, step: StepResult) -> ET.Element:
    case = ET.Element(
        "testcase",
        {
            "name": step.name,
            "classname": _classname(pipeline, step),
            "time": _seconds(step.duration),
        },
    )
    message = _clean(f"{step.status.value}: {step.reason}" if step.reason else step.status.value)
    if step.status in _FAILURE or step.status in _ERROR:
        kind = "failure" if step.status in _FAILURE else "error"
        element = ET.SubElement(case, kind, {"message": message, "type": step.status.name.lower()})
        element.text = _clean("\n".join(log_tail(step.log_path, TAIL_LINES)))
    elif not (step.status.ok and step.status is not Status.UNCHANGED):
        # Skipped, cancelled, unchanged and allowed failures: not run, or not held against it.
        ET.SubElement(case, "skipped", {"message": message})
    return case


def _classname(pipeline: str, step: StepResult) -> str:
    """The pipeline; `<pipeline>.<step>` for a matrix step's instance, which test-report tools
    then group under its step."""
    instance = split_instance(step.name)
    return pipeline if instance is None else f"{pipeline}.{instance[0]}"


def _image_case(pipeline: str, image: ImageResult) -> ET.Element:
    case = ET.Element(
        "testcase", {"name": IMAGE_CASE, "classname": pipeline, "time": _seconds(image.duration)}
    )
    error = ET.SubElement(
        case, "error", {"message": _clean(image.reason or "the image failed to build")}
    )
    error.set("type", "image")
    error.text = _clean("\n".join(log_tail(image.log_path, TAIL_LINES)))
    return case


def _seconds(value: float | None) -> str:
    # The schema's SUREFIRE_TIME allows at most three decimals.
    return f"{max(value or 0.0, 0.0):.3f}"


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
