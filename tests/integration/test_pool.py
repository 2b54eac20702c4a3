"""The pool of started containers, on real containers: a pooled step runs exactly as it would
in a container of its own, the pool starts no container the run will not use, and every pooled
container is gone when the run ends, however it ends."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled
from tests.helpers.project import Project, pool_log, start_run

pytestmark = pytest.mark.docker

POOL_LABEL = "io.parapipe.pool=1"


def pooled_steps(run: Path) -> dict[str, str]:
    """Which pooled container took each step."""
    return {step: name for name, step in re.findall(r"(\S+) takes step '([^']+)'", pool_log(run))}


def step_log(run: Path, step: str) -> list[str]:
    """The step's log without the closing line, which holds a duration."""
    return (run / f"{step}.log").read_text().splitlines()[:-1]


def test_each_pooled_step_starts_from_the_image_as_pid_1(project: Project) -> None:
    project.write_spec(f"""
        image:
          from: {BUSYBOX}
          setup: [echo from-setup > /built]
        steps:
          first: {{run: "true"}}
          writes: {{run: [touch /tmp/mark mark, cat /built], needs: [first]}}
          reads:
            run:
              - test ! -e /tmp/mark && test ! -e mark && echo clean
              - tr '\\0' ' ' < /proc/1/cmdline | grep -q 'for command do' && echo step-is-pid-1
            needs: [writes]
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "-j", "2")
    assert result.exit_code == 0, result.output
    run = project.last_run()
    pooled = pooled_steps(run)
    assert {"writes", "reads"} <= set(pooled), pool_log(run)
    assert pooled["writes"] != pooled["reads"]
    assert "from-setup" in step_log(run, "writes")
    assert {"clean", "step-is-pid-1"} <= set(step_log(run, "reads"))
    assert containers_labelled(run.name) == []


def test_a_pooled_step_has_its_env_workdir_and_user_as_in_a_container_of_its_own(
    project: Project,
) -> None:
    (project.root / "base").mkdir()
    (project.root / "base" / "Dockerfile").write_text(f"FROM {BUSYBOX}\nUSER 4321:4321\n")
    project.write_spec("""
        image:
          build: base
          workdir: /work
          env: {FROM_IMAGE: image-value, OVERRIDDEN: image}
        steps:
          first: {run: "true"}
          show:
            run:
              - echo "[$STEP_VAR][$FROM_IMAGE][$OVERRIDDEN][$PARAPIPE_STEP][$(pwd)][$(id -u)]"
              - read line || echo stdin-is-empty
            env: {STEP_VAR: "it's \\"$quoted\\" `x`", OVERRIDDEN: step}
            needs: [first]
    """)
    pooled = project.run("run", "-f", "ci.yaml", "--output", "plain", "--no-cache")
    assert pooled.exit_code == 0, pooled.output
    pooled_run = project.last_run()
    assert "show" in pooled_steps(pooled_run), pool_log(pooled_run)
    alone = project.run("run", "-f", "ci.yaml", "--output", "plain", "--no-cache", "--no-prewarm")
    assert alone.exit_code == 0, alone.output
    assert pool_log(project.last_run()) == ""

    expected = '[it\'s "$quoted" `x`][image-value][step][show][/work][4321]'
    assert step_log(pooled_run, "show")[1:] == [
        expected,
        "$ read line || echo stdin-is-empty",
        "stdin-is-empty",
    ]
    assert step_log(pooled_run, "show") == step_log(project.last_run(), "show")


def test_outputs_cross_from_one_pooled_step_to_the_next(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          first: {{run: "true"}}
          build: {{run: "mkdir -p dist && echo wheel > dist/app.whl", outputs: [dist], needs: [first]}}
          use: {{run: cat dist/app.whl, needs: [build]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 0, result.output
    run = project.last_run()
    assert {"build", "use"} <= set(pooled_steps(run)), pool_log(run)
    assert step_log(run, "use") == ["$ cat dist/app.whl", "wheel"]


def die_events(run_id: str, since: float) -> list[str]:
    """Names of the run's containers in the order they died, as the daemon saw it."""
    listed = subprocess.run(
        [
            "docker", "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
            "--filter", f"label=io.parapipe.run={run_id}", "--filter", "event=die",
            "--format", "{{.Actor.Attributes.name}}",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return listed.stdout.split()


def test_a_timeout_kills_the_pooled_container_at_once(project: Project) -> None:
    # `slow` keeps the run going well past `hangs`' timeout: its container dies first.
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          first: {{run: "true"}}
          hangs: {{run: [echo hanging, sleep 300], timeout: 1s, needs: [first]}}
          slow: {{run: sleep 8, needs: [first]}}
    """)
    since = time.time()
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "--keep-going", timeout=120)
    assert result.exit_code == 1, result.output
    run = project.last_run()
    pooled = pooled_steps(run)
    assert {"hangs", "slow"} <= set(pooled), pool_log(run)
    assert "parapipe: timed out after 1s; container killed" in (run / "hangs.log").read_text()
    died = die_events(run.name, since)
    assert died.index(pooled["hangs"]) < died.index(pooled["slow"]), died
    assert containers_labelled(run.name) == []


def pool_containers(pipeline: str, *, running_only: bool) -> list[str]:
    listed = subprocess.run(
        [
            "docker", "ps", *([] if running_only else ["-a"]), "--format", "{{.Names}}",
            "--filter", f"label={POOL_LABEL}", "--filter", f"label=io.parapipe.pipeline={pipeline}",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return listed.stdout.split()


def test_ctrl_c_leaves_no_pooled_container(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          one: {{run: [echo one-started, sleep 300]}}
          two: {{run: "true", needs: [one]}}
          three: {{run: "true", needs: [one]}}
    """)
    process = subprocess.Popen(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "-j", "4", "--output", "plain"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if "one-started" in line:
            break
    # `one` runs; the pool holds containers for `two` and `three`, which need it.
    deadline = time.monotonic() + 60
    while pool_log(project.last_run()).count(" up\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(pool_containers(project.name, running_only=True)) >= 2, pool_log(project.last_run())
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert containers_labelled(project.last_run().name) == []
    assert pool_containers(project.name, running_only=False) == []


def most_idle(journal: str) -> int:
    """The most pooled containers that had been started and not yet taken by a step, at once."""
    idle: set[str] = set()
    most = 0
    for line in journal.splitlines():
        if found := re.search(r"(\S+\.pool-\d+) starting", line):
            idle.add(found[1])
        elif found := re.search(r"(\S+) (takes step|is not needed any more|is not used)", line):
            idle.discard(found[1])
        most = max(most, len(idle))
    return most


def test_the_pool_holds_no_more_than_the_steps_can_take(project: Project) -> None:
    # Ten independent steps, two at a time: at most two running and two ready to take over.
    steps = "\n".join(f"  s{i}: {{run: sleep 1}}" for i in range(10))
    project.write_spec(f"image: {{from: {BUSYBOX}}}\nsteps:\n{steps}\n")
    process = start_run(project, "-j", "2")
    most, seen = 0, set()
    while process.poll() is None:
        running = pool_containers(project.name, running_only=True)
        most = max(most, len(running))
        seen.update(running)
        time.sleep(0.05)
    assert process.returncode == 0
    run = project.last_run()
    started = re.findall(r"(\S+\.pool-\d+) starting", pool_log(run))
    # Idle (started, no step yet): never more than --jobs. A container whose step ended may
    # still be torn down while the ones after it run, so `most` counts those too.
    assert most_idle(pool_log(run)) <= 2, pool_log(run)
    assert most <= 2 * 2 + 2, pool_log(run)
    assert seen <= set(started)
    assert len(started) <= 10
    assert containers_labelled(run.name) == []


def test_after_fail_fast_the_unused_containers_are_few_and_removed(project: Project) -> None:
    steps = "\n".join(f"  other{i}: {{run: sleep 1}}" for i in range(8))
    project.write_spec(f"""
image: {{from: {BUSYBOX}}}
steps:
  fails: {{run: "sleep 0.5; exit 1"}}
{steps}
""")
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "-j", "2", "--no-cache")
    assert result.exit_code == 1, result.output
    run = project.last_run()
    log = pool_log(run)
    started = re.findall(r"(\S+\.pool-\d+) starting", log)
    # The pool holds at most --jobs containers that no step has taken yet.
    assert len(started) - len(pooled_steps(run)) <= 2, log
    assert containers_labelled(run.name) == []


def test_an_unchanged_rerun_starts_no_container(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          a: {{run: echo a}}
          b: {{run: echo b, needs: [a]}}
    """)
    assert project.run("run", "-f", "ci.yaml", "--output", "plain").exit_code == 0
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 0, result.output
    assert "starting" not in pool_log(project.last_run())


def test_an_image_with_an_entrypoint_runs_every_step_in_a_container_of_its_own(
    project: Project,
) -> None:
    # The entrypoint must run as the step starts; a pooled container would have run it early.
    (project.root / "base").mkdir()
    (project.root / "base" / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\n"
        'ENTRYPOINT ["/bin/sh", "-c", "echo entrypoint-ran; exec \\"$@\\"", "entry"]\n'
    )
    project.write_spec("""
        image: {build: base}
        steps:
          a: {run: echo a}
          b: {run: echo b, needs: [a]}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "--no-cache")
    assert result.exit_code == 0, result.output
    run = project.last_run()
    assert "the image has an ENTRYPOINT" in pool_log(run)
    assert pooled_steps(run) == {}
    assert step_log(run, "b") == ["entrypoint-ran", "$ echo b", "b"]
    assert containers_labelled(run.name) == []
