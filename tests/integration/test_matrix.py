"""Matrix steps and outputs that would collide, on real containers: every instance runs with
its values, a dependent sees each instance's outputs under `<step>/<values>/`, one instance can
be run alone, and two needs never overwrite each other's outputs silently."""

from __future__ import annotations

import json

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

MATRIX = f"""
    image: {{from: {BUSYBOX}}}
    steps:
      test:
        run: [mkdir -p out, 'echo "shard $SHARD on $PY" > out/result.txt']
        matrix:
          SHARD: [0, 1]
          PY: ["3.11", "3.12"]
          exclude: [{{SHARD: 1, PY: "3.11"}}]
          include: [{{SHARD: 0, PY: "3.13"}}]
        outputs: [out]
      report:
        run: ['find test -type f | sort', 'cat test/*/out/result.txt | sort']
        needs: [test]
"""
INSTANCES = ["SHARD=0,PY=3.11", "SHARD=0,PY=3.12", "SHARD=1,PY=3.12", "SHARD=0,PY=3.13"]


def test_a_dependent_sees_every_instances_outputs(project: Project) -> None:
    project.write_spec(MATRIX)
    result = project.run(
        "run",
        "-f",
        "ci.yaml",
        "--output",
        "plain",
        "--report",
        ".parapipe/r.json",
        "--export",
        ".parapipe/exported",
    )
    assert result.exit_code == 0, result.output
    run_dir = project.last_run()
    report = (run_dir / "report.log").read_text()
    for label in INSTANCES:
        assert f"test/{label}/out/result.txt" in report
    shards = sorted(f"shard {v[6]} on {v[-4:]}" for v in INSTANCES)
    assert [line for line in report.splitlines() if line.startswith("shard")] == shards
    statuses = {
        s["name"]: s["status"]
        for s in json.loads((project.root / ".parapipe/r.json").read_text())["steps"]
    }
    assert statuses == {**{f"test[{label}]": "passed" for label in INSTANCES}, "report": "passed"}
    # --export lays the instances out as a dependent gets them: no instance overwrites another.
    exported = project.root / ".parapipe" / "exported"
    assert sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*.txt")) == sorted(
        f"test/{label}/out/result.txt" for label in INSTANCES
    )
    assert containers_labelled(run_dir.name) == []

    # Each instance is cached on its own: an unchanged re-run runs none of them (the report
    # and the export went under .parapipe/, which is not part of the source).
    again = project.run("run", "-f", "ci.yaml", "--output", "plain", "--report", ".parapipe/r.json")
    assert again.exit_code == 0, again.output
    statuses = {
        s["name"]: s["status"]
        for s in json.loads((project.root / ".parapipe/r.json").read_text())["steps"]
    }
    assert set(statuses.values()) == {"cached"}

    # Left out (--no-deps), the instances' outputs come from the step cache, nested the same way.
    alone = project.run(
        "run", "-f", "ci.yaml", "--output", "plain", "--no-cache", "--no-deps", "report"
    )
    assert alone.exit_code == 0, alone.output
    report = (project.last_run() / "report.log").read_text()
    assert all(f"test/{label}/out/result.txt" in report for label in INSTANCES)


def test_one_instance_runs_alone_and_an_unknown_one_is_refused(project: Project) -> None:
    project.write_spec(MATRIX)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "test[PY=3.12,SHARD=1]")
    assert result.exit_code == 0, result.output
    run_dir = project.last_run()
    assert sorted(p.name for p in run_dir.glob("*.log") if p.name != "image.build.log") == [
        "test[SHARD=1,PY=3.12].log"
    ]
    assert (
        "shard 1 on 3.12"
        in (run_dir / "artifacts" / "test[SHARD=1,PY=3.12]" / "out" / "result.txt").read_text()
    )

    unknown = project.run("run", "-f", "ci.yaml", "test[SHARD=1,PY=3.11]")
    assert unknown.exit_code == 2
    assert unknown.stderr.strip().splitlines() == [
        "parapipe: ci.yaml: step 'test' has no instance 'test[SHARD=1,PY=3.11]'"
        " (did you mean 'test[SHARD=1,PY=3.12]'?)"
    ]


COLLIDING = f"""
    image: {{from: {BUSYBOX}}}
    steps:
      a: {{run: [mkdir -p out, echo from-a > out/f], outputs: [out]}}
      b: {{run: [mkdir -p out, echo from-b > out/f], outputs: [out]}}
"""


def test_needs_with_overlapping_outputs_are_refused_up_front(project: Project) -> None:
    project.write_spec(COLLIDING + "      c: {run: cat out/f, needs: [a, b]}\n")
    result = project.run("run", "-f", "ci.yaml")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "ci.yaml:7:34: step 'c' needs 'a' and 'b', whose outputs both hand on 'out':"
        " one would overwrite the other; rename one of the outputs"
    ]
    assert project.runs() == []  # refused before anything ran


def test_export_keeps_both_when_outputs_overlap(project: Project) -> None:
    project.write_spec(COLLIDING)
    result = project.run("run", "-f", "ci.yaml", "--export", ".parapipe/exported")
    assert result.exit_code == 0, result.output
    exported = project.root / ".parapipe" / "exported"
    assert (exported / "a" / "out" / "f").read_text() == "from-a\n"
    assert (exported / "b" / "out" / "f").read_text() == "from-b\n"
    assert not (exported / "out").exists()


def test_outputs_that_collide_only_in_content_fail_the_dependent_before_it_starts(
    project: Project,
) -> None:
    # `a` once handed on `out/`; the step cache keeps that entry. Now `a` declares `other/`
    # and `b` hands on `out/`: a run that leaves `a` out takes its outputs from that entry,
    # and only their content shows that they land where `b`'s do.
    project.write_spec(COLLIDING)
    assert project.run("run", "-f", "ci.yaml", "a").exit_code == 0
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          a: {{run: [mkdir -p other, echo x > other/g], outputs: [other]}}
          b: {{run: [mkdir -p out, echo from-b > out/f], outputs: [out]}}
          c: {{run: [touch started, cat out/f], needs: [a, b], outputs: [started]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "--no-deps", "b", "c")
    assert result.exit_code == 1, result.output
    reason = "needs 'a' and 'b' both hand on 'out/f': one would overwrite the other, so the step does not start"
    assert reason in result.stdout
    run_dir = project.last_run()
    assert (run_dir / "c.log").read_text().startswith(f"parapipe: {reason}\n")
    assert not (run_dir / "artifacts" / "c").exists()
    assert containers_labelled(run_dir.name) == []
