"""Networks the pool lends (`engine/docker/network.py`), on real containers: two steps that
run at the same time never share one, steps that run one after another do, and no holder is
left once the run ends, however it ends."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled
from tests.helpers.project import Project, pool_log, start_run

pytestmark = pytest.mark.docker

# Holds TCP port 8000 for the whole step, and fails when another process in its network holds
# it already: a step that shared its network with a step running at the same time fails.
HOLDS_PORT = (
    "nc -l -p 8000 & listener=$!; sleep 0.3; kill -0 $listener; kill $listener; "
    'echo "hostname $(hostname)"'
)


def hostnames(run: Path, steps: int) -> set[str]:
    """The hostnames that steps s00, s01, ... printed."""
    return {
        line.split()[1]
        for i in range(steps)
        for line in (run / f"s{i:02d}.log").read_text().splitlines()
        if line.startswith("hostname ")
    }


def lent_networks(run_log: str) -> list[str]:
    """The holder of each pooled container started in a holder's network."""
    return re.findall(r"\S+ starting in the network of (\S+)", run_log)


def test_steps_running_together_never_share_a_network_and_later_ones_do(
    project: Project,
) -> None:
    steps = "\n".join(f"  s{i:02d}: {{run: {HOLDS_PORT!r}}}" for i in range(20))
    project.write_spec(f"image: {{from: {BUSYBOX}}}\nsteps:\n{steps}\n")
    result = project.run("run", "-f", "ci.yaml", "-j", "4", "--output", "plain", "--no-cache")
    assert result.exit_code == 0, result.output
    run = project.last_run()
    lent = lent_networks(pool_log(run))
    assert lent, pool_log(run)
    assert max(Counter(lent).values()) >= 2, pool_log(run)
    # In a holder's network, a step has the holder's hostname: fewer hostnames than steps.
    assert len(hostnames(run, 20)) < 20
    assert containers_labelled(run.name) == []


def test_no_prewarm_lends_no_network(project: Project) -> None:
    steps = "\n".join(f"  s{i:02d}: {{run: {HOLDS_PORT!r}}}" for i in range(8))
    project.write_spec(f"image: {{from: {BUSYBOX}}}\nsteps:\n{steps}\n")
    result = project.run(
        "run", "-f", "ci.yaml", "-j", "4", "--output", "plain", "--no-cache", "--no-prewarm"
    )
    assert result.exit_code == 0, result.output
    run = project.last_run()
    assert len(hostnames(run, 8)) == 8


def test_ctrl_c_leaves_no_holder(project: Project) -> None:
    quick = "\n".join(f"  q{i:02d}: {{run: 'true'}}" for i in range(12))
    slow = "\n".join(f"  w{i:02d}: {{run: 'sleep 300', needs: [q00]}}" for i in range(4))
    project.write_spec(f"image: {{from: {BUSYBOX}}}\nsteps:\n{quick}\n{slow}\n")
    process = start_run(project, "-j", "4")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        runs = project.runs()
        if runs and "is up: its network can be lent" in pool_log(runs[-1]):
            break
        time.sleep(0.1)
    run = project.last_run()
    assert "is up: its network can be lent" in pool_log(run), pool_log(run)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert containers_labelled(run.name) == []
