"""Timeouts, retries, allowed failures and signals on real containers."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled
from tests.helpers.project import Project

pytestmark = pytest.mark.docker


def test_a_timeout_kills_the_container_and_fails_the_step(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          hangs: {{run: [echo hanging, sleep 300], timeout: 2s}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", timeout=60)
    assert result.exit_code == 1, result.output
    log = (project.last_run() / "hangs.log").read_text()
    assert "hanging" in log
    assert "parapipe: timed out after 2s; container killed" in log
    assert "timed out" in result.stdout
    assert containers_labelled(project.last_run().name) == []


def test_each_retry_runs_in_a_fresh_container(project: Project) -> None:
    # The mark left by attempt 1 would let attempt 2 pass if it reused the container.
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          fresh: {{run: 'test -e /tmp/mark && exit 0; touch /tmp/mark; exit 1', retries: 1}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 1, result.output
    log = (project.last_run() / "fresh.log").read_text()
    assert "parapipe: attempt 2/2" in log
    assert "exit code 1 on attempt 2/2" in result.stdout


def test_a_flaky_step_passes_on_its_second_attempt(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          flaky: {{run: '[ "$PARAPIPE_ATTEMPT" = 2 ] || exit 75', retries: 2, retry_on: [75]}}
          after: {{run: echo after-ran, needs: [flaky]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 0, result.output
    assert "passed on attempt 2/3" in result.stdout
    assert "after-ran" in (project.last_run() / "after.log").read_text()


def test_an_allowed_failure_exits_0_and_skips_its_dependents(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          optional: {{run: exit 4, allow_failure: true}}
          after: {{run: "true", needs: [optional]}}
          other: {{run: echo other-ran}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "-j", "1")
    assert result.exit_code == 0, result.output
    assert "failed (allowed)" in result.stdout
    assert "other-ran" in (project.last_run() / "other.log").read_text()
    assert not (project.last_run() / "after.log").exists()


def start_long_run(project: Project) -> subprocess.Popen[str]:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          one: {{run: [echo one-started, sleep 300]}}
          two: {{run: [echo two-started, sleep 300]}}
          later: {{run: "true", needs: [one]}}
    """)
    process = subprocess.Popen(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "-j", "2", "--output", "plain"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen = ""
    for line in process.stdout:
        seen += line
        if "one-started" in seen and "two-started" in seen:
            return process
    raise AssertionError(f"the steps never started:\n{seen}")


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), (signal.SIGHUP, 129)],  # SIGHUP: the terminal was closed
    ids=["SIGTERM", "SIGHUP"],
)
def test_a_stop_signal_stops_the_run_removes_its_containers_and_exits_128_plus_it(
    project: Project, signum: signal.Signals, code: int
) -> None:
    process = start_long_run(project)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == code, output
    assert containers_labelled(project.last_run().name) == []
    assert "interrupted" in (project.last_run() / "one.log").read_text()
    assert "later" in output  # the summary names the step that never started


def test_a_second_ctrl_c_still_removes_the_containers(project: Project) -> None:
    process = start_long_run(project)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 130, output
    assert containers_labelled(project.last_run().name) == []
