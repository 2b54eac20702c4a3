"""Load: many small random DAGs at once on real containers, every log whole and in order."""

from __future__ import annotations

import json
import random

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

STEPS = 200
LINES = 40


def random_dags(seed: int) -> dict[str, list[str]]:
    """Several small DAGs side by side: each step needs up to 3 earlier steps of its own DAG."""
    rng = random.Random(seed)
    needs: dict[str, list[str]] = {}
    for dag in range(STEPS // 10):
        names = [f"d{dag}s{index}" for index in range(10)]
        for index, name in enumerate(names):
            needs[name] = rng.sample(names[:index], k=min(index, rng.randint(0, 3)))
    return needs


def test_200_steps_with_16_jobs_keep_every_log_whole_and_in_order(project: Project) -> None:
    needs = random_dags(seed=20261129)
    # Each step prints numbered lines, some on stderr, with its name: any line lost, torn or
    # taken from another step shows in the check below.
    command = (
        f'for i in $(seq 1 {LINES}); do echo "$PARAPIPE_STEP $i";'
        ' [ $((i % 7)) = 0 ] && echo "$PARAPIPE_STEP $i err" >&2; done; true'
    )
    lines = [f"image: {{from: {BUSYBOX}}}", "steps:"]
    for name, deps in needs.items():
        lines.append(f"  {name}: {{run: {json.dumps(command)}, needs: [{', '.join(deps)}]}}")
    project.spec.write_text(f"name: {project.name}\n" + "\n".join(lines) + "\n")
    result = project.run("run", "-f", "ci.yaml", "-j", "16", "--output", "plain", timeout=600)
    assert result.exit_code == 0, result.output[-3000:]
    run_dir = project.last_run()
    for name in needs:
        log = (run_dir / f"{name}.log").read_text().splitlines()
        body = [line for line in log if not line.startswith(("$ ", "parapipe: "))]
        expected: list[str] = []
        for i in range(1, LINES + 1):
            expected.append(f"{name} {i}")
            if i % 7 == 0:
                expected.append(f"{name} {i} err")
        assert body == expected, name
    assert containers_labelled(run_dir.name) == []
