"""`parapipe run` end to end: real containers through the real Docker daemon."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

# /proc/uptime is the host kernel's clock, shared by every container: a step can stamp when
# it ran in a way the test can compare across containers, to the hundredth of a second.
STAMP = "read up _ < /proc/uptime; echo {label} $up"


def stamps(log: Path) -> dict[str, float]:
    found = re.findall(r"^(start|end) ([0-9.]+)$", log.read_text(), re.MULTILINE)
    return {label: float(value) for label, value in found}


def test_diamond_runs_its_middle_steps_at_the_same_time(project: Project) -> None:
    middle = f"[{STAMP.format(label='start')!r}, sleep 2, {STAMP.format(label='end')!r}]"
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          top: {{run: "true"}}
          left: {{run: {middle}, needs: [top]}}
          right: {{run: {middle}, needs: [top]}}
          bottom: {{run: "true", needs: [left, right]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "-j", "4")
    assert result.exit_code == 0, result.output
    left, right = stamps(project.last_run() / "left.log"), stamps(project.last_run() / "right.log")
    assert left["start"] < right["end"]
    assert right["start"] < left["end"]
    assert containers_labelled(project.last_run().name) == []


def test_every_step_container_is_made_from_the_one_pipeline_image(project: Project) -> None:
    project.write_spec(f"""
        image:
          from: {BUSYBOX}
          setup: [echo built > /built]
        steps:
          a: {{run: cat /built}}
          b: {{run: cat /built}}
          c: {{run: cat /built, needs: [a, b]}}
    """)
    since = str(int(time.time()) - 1)
    result = project.run("run", "-f", "ci.yaml")
    assert result.exit_code == 0, result.output
    run_id = project.last_run().name
    events = subprocess.run(
        [
            "docker", "events", "--since", since, "--until", str(int(time.time()) + 1),
            "--filter", "type=container", "--filter", "event=create",
            "--filter", f"label=io.parapipe.run={run_id}",
            "--format", "{{json .Actor.Attributes}}",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    created = [json.loads(line) for line in events.stdout.splitlines()]
    # A container the pool started ahead of its step names the step in the pool's journal.
    journal_path = project.last_run() / "pool.txt"
    journal = journal_path.read_text() if journal_path.exists() else ""
    pooled = {name: step for name, step in re.findall(r"(\S+) takes step '(\w+)'", journal)}
    steps = [c.get("io.parapipe.step") or pooled[c["name"]] for c in created]
    assert sorted(steps) == ["a", "b", "c"]
    images = {c["image"] for c in created}
    assert len(images) == 1
    (image,) = images
    tagged = subprocess.run(
        ["docker", "image", "ls", "-q", "--no-trunc", f"parapipe/{project.name}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert image in tagged.stdout.split()


def test_an_unchanged_rerun_builds_nothing_and_a_change_rebuilds(project: Project) -> None:
    (project.root / "data.txt").write_text("one\n")
    project.write_spec(f"""
        image:
          from: {BUSYBOX}
          setup: [echo setup-ran]
        steps:
          show: {{run: cat data.txt}}
    """)
    assert project.run("run", "-f", "ci.yaml").exit_code == 0
    assert "setup-ran" in (project.last_run() / "image.build.log").read_text()
    assert project.run("run", "-f", "ci.yaml").exit_code == 0
    assert "setup-ran" not in (project.last_run() / "image.build.log").read_text()
    (project.root / "data.txt").write_text("two\n")
    assert project.run("run", "-f", "ci.yaml").exit_code == 0
    assert "setup-ran" in (project.last_run() / "image.build.log").read_text()
    assert "two" in (project.last_run() / "show.log").read_text()


def test_a_failing_step_fails_the_run_and_skips_its_dependents(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          lint: {{run: [echo checking, exit 3]}}
          test: {{run: "true", needs: [lint]}}
          package: {{run: "true", needs: [test]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 1
    log = (project.last_run() / "lint.log").read_text()
    assert "checking" in log
    assert "exit 3" in log
    assert "skipped" in result.output
    assert "needs 'lint', which failed" in result.output
    assert not (project.last_run() / "test.log").exists()


def test_fail_fast_stops_a_long_sibling(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          slow: {{run: [echo slow-started, sleep 300]}}
          broken: {{run: sleep 1 && exit 1}}
    """)
    result = project.run("run", "-f", "ci.yaml", "-j", "2", "--output", "plain", timeout=60)
    assert result.exit_code == 1
    assert "slow-started" in (project.last_run() / "slow.log").read_text()
    assert "cancelled" in (project.last_run() / "slow.log").read_text()
    assert containers_labelled(project.last_run().name) == []


def test_keep_going_runs_independent_steps_after_a_failure(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          broken: {{run: exit 1}}
          other: {{run: sleep 1 && echo other-ran}}
          after: {{run: "true", needs: [broken]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "-j", "1", "--keep-going")
    assert result.exit_code == 1
    assert "other-ran" in (project.last_run() / "other.log").read_text()
    assert not (project.last_run() / "after.log").exists()


def test_naming_a_step_runs_it_and_what_it_needs_only(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          a: {{run: "true"}}
          b: {{run: "true", needs: [a]}}
          c: {{run: "true"}}
    """)
    assert project.run("run", "-f", "ci.yaml", "b").exit_code == 0
    logs = sorted(p.name for p in project.last_run().glob("*.log") if p.name != "image.build.log")
    assert logs == ["a.log", "b.log"]


def test_env_and_workdir_reach_the_step(project: Project) -> None:
    (project.root / "here.txt").write_text("source file\n")
    project.write_spec(f"""
        image:
          from: {BUSYBOX}
          workdir: /work/app
          env: {{FROM_IMAGE: baked}}
        steps:
          show:
            run: ['echo "$FROM_IMAGE $FROM_STEP $(pwd)"', cat here.txt]
            env: {{FROM_STEP: 42}}
    """)
    assert project.run("run", "-f", "ci.yaml").exit_code == 0
    log = (project.last_run() / "show.log").read_text()
    assert "baked 42 /work/app" in log
    assert "source file" in log


def test_a_failing_setup_command_fails_the_run_with_its_log(project: Project) -> None:
    project.write_spec(f"""
        image:
          from: {BUSYBOX}
          setup: [echo about-to-fail, exit 7]
        steps:
          never: {{run: "true"}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 1, result.output
    assert "about-to-fail" in (project.last_run() / "image.build.log").read_text()
    assert "Traceback" not in result.output


def test_an_unknown_step_on_the_command_line_is_a_usage_error(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          lint: {{run: "true"}}
    """)
    result = project.run("run", "-f", "ci.yaml", "lnt")
    assert result.exit_code == 2
    assert "no step named 'lnt'" in result.stderr
    assert "did you mean 'lint'" in result.stderr
    assert project.runs() == []


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ("steps: {a: {run: x}\n", "ci.yaml:", "flow"),
        ("image: {from: x}\nsteps:\n  a: {run: x, nedds: [b]}\n", "ci.yaml:3:", "did you mean 'needs'"),
        ("image: {from: x}\nsteps:\n  a: {run: x, needs: [a2]}\n  b: {run: x}\n", "ci.yaml:3:", "a2"),
        ("image: {from: x}\nsteps:\n  a: {run: x, needs: b}\n  b: {run: x, needs: a}\n", "ci.yaml:", "a -> b -> a"),
        ("image: {from: x}\nsteps:\n  a: {run: x}\n  a: {run: y}\n", "ci.yaml:4:", "duplicate"),
        ("image: {from: x}\nsteps: {}\n", "ci.yaml:2:", "steps"),
    ],
)  # fmt: skip
def test_bad_specs_exit_2_with_one_located_line(
    project: Project, body: str, where: str, message: str
) -> None:
    project.spec.write_text(body)
    for command in ("run", "validate"):
        result = project.run(command, "-f", "ci.yaml")
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(where), lines[0]
        assert message in lines[0]


def test_no_reachable_engine_exits_3_with_one_line(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          a: {{run: "true"}}
    """)
    env = {
        **os.environ,
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "PATH": _path_without_podman(),
    }
    completed = subprocess.run(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml"],
        cwd=project.root, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 3, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "docker" in lines[0]


def _path_without_podman() -> str:
    keep = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "podman").exists()]
    return os.pathsep.join(keep)


def test_ctrl_c_stops_the_run_and_removes_its_containers(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          long: {{run: [echo long-started, sleep 300]}}
          longer: {{run: [echo longer-started, sleep 300]}}
    """)
    process = subprocess.Popen(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "-j", "2", "--output", "plain"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen = ""
    for line in process.stdout:
        seen += line
        if "long-started" in seen and "longer-started" in seen:
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 130, seen + rest
    run_id = project.last_run().name
    assert containers_labelled(run_id) == []
    assert "interrupted" in (project.last_run() / "long.log").read_text()
