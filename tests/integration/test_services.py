"""Services beside a step, on real containers: a private PostgreSQL per step, readiness that
fails in one line, secrets masked in a service's log, and nothing left behind however the run
ends (Ctrl-C included). Podman runs the parallel-isolation case too."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled, image_present
from tests.helpers.podman import why_podman_cannot_run
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

POSTGRES = "parapipe-seed/postgres:bookworm"  # seeded by scripts/seed-images

# Each step creates the same table in the database it reaches as host `db`, fills it and reads
# it back: with a database of its own it sees its own rows only.
POSTGRES_SPEC = f"""
    image: {{from: "{POSTGRES}"}}
    services:
      db:
        image: {POSTGRES}
        env: {{POSTGRES_PASSWORD: test}}
        ready: {{run: "pg_isready -h 127.0.0.1", timeout: 120s, interval: 200ms}}
    steps:
      left:
        env: {{PGPASSWORD: test}}
        run:
          - psql -h db -U postgres -v ON_ERROR_STOP=1 -c "create table t (v text)" -c "insert into t values ('left-1'), ('left-2')"
          - echo "rows=$(psql -h db -U postgres -Atc "select string_agg(v, ',' order by v) from t")"
        services: [db]
      right:
        env: {{PGPASSWORD: test}}
        run:
          - psql -h db -U postgres -v ON_ERROR_STOP=1 -c "create table t (v text)" -c "insert into t values ('right-1')"
          - echo "rows=$(psql -h db -U postgres -Atc "select string_agg(v, ',' order by v) from t")"
        services: [db]
"""

# A key-value service in busybox alone (for Podman, which has no PostgreSQL seeded): what is
# sent to port 7000 is served back over HTTP as /data.
# Readiness asks the web server only, so the listener may not be up at the first send: send
# until the service has something, then show what it holds (one line each when isolated).
SEND = (
    "for i in $(seq 50); do echo from-{side} | nc -w 1 kv 7000 || true;"
    ' d=$(wget -q -O- http://kv:8080/data); [ -z \\"$d\\" ] || break; sleep 0.2; done;'
    ' echo data=$(echo \\"$d\\" | sort -u)'
)
KV_SPEC = f"""
    image: {{from: "{BUSYBOX}"}}
    services:
      kv:
        run: ["mkdir -p /www && touch /www/data", "httpd -p 8080 -h /www", "while true; do nc -l -p 7000 >> /www/data; done"]
        ready: {{run: "wget -q -O /dev/null http://127.0.0.1:8080/data", timeout: 60s, interval: 100ms}}
    steps:
      left: {{run: ["{SEND.format(side="left")}"], services: [kv]}}
      right: {{run: ["{SEND.format(side="right")}"], services: [kv]}}
"""


def networks_labelled(run_id: str, engine: str = "docker") -> list[str]:
    listed = subprocess.run(
        [engine, "network", "ls", "-q", "--filter", f"label=io.parapipe.run={run_id}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return listed.stdout.split()


def assert_nothing_left(project: Project, engine: str = "docker") -> None:
    run_id = project.last_run().name
    if engine == "docker":
        assert containers_labelled(run_id) == []
    else:
        listed = subprocess.run(
            ["podman", "ps", "-aq", "--filter", f"label=io.parapipe.run={run_id}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert listed.stdout.split() == []
    assert networks_labelled(run_id, engine) == []


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_two_parallel_steps_each_get_a_postgresql_of_their_own(
    project: Project, engine: str
) -> None:
    if engine == "docker" and not image_present(POSTGRES):
        pytest.skip(f"{POSTGRES} is not seeded (run scripts/seed-images)")
    if engine == "podman":
        if (why := why_podman_cannot_run()) is not None:
            pytest.skip(why)
        if subprocess.run(["podman", "image", "exists", POSTGRES], check=False).returncode:
            pytest.skip(f"{POSTGRES} is not in podman (scripts/seed-images --engine podman)")
    project.write_spec(POSTGRES_SPEC)
    try:
        result = project.run(
            "run", "-f", "ci.yaml", "-j", "2", "--engine", engine, "--output", "plain",
            timeout=300,
        )  # fmt: skip
    finally:
        if engine == "podman":
            _remove_podman_images(project.name)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()}" for p in project.last_run().rglob("*.log"))
    assert result.exit_code == 0, result.output + logs
    run = project.last_run()
    left, right = (run / "left.log").read_text(), (run / "right.log").read_text()
    assert "rows=left-1,left-2" in left
    assert "rows=right-1" in right
    assert "right-1" not in left
    assert "left-" not in right
    # Each waited for its own database to be ready.
    assert "service 'db' ready after" in left
    assert "service 'db' ready after" in right
    for step in ("left", "right"):
        assert (
            "database system is ready to accept connections"
            in (run / f"{step}.services" / "db.log").read_text()
        )
    pool = (run / "pool.txt").read_text()
    assert (
        "step 'left' (attempt 1) starts its own container, on the network of its services" in pool
    )
    assert_nothing_left(project)


def test_a_service_that_is_never_ready_fails_its_step_in_one_line(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        services:
          slow:
            run: ["echo warming-up", "sleep 600"]
            # Long enough for its first line to reach its log however busy the daemon is.
            ready: {{run: "false", timeout: 10s, interval: 100ms}}
        steps:
          test: {{run: echo never-runs, services: [slow]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 1, result.output
    assert "failed in" in result.output
    assert "service 'slow' was not ready after 10s" in result.output
    log = (project.last_run() / "test.log").read_text()
    assert "  slow | warming-up" in log  # the tail of the service's log
    assert "never-runs" not in log.replace("echo never-runs", "")
    assert_nothing_left(project)


def test_a_service_that_exits_fails_its_step_with_its_exit_code(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        services:
          broken:
            run: ["echo cannot-start >&2", "exit 7"]
            ready: {{run: "false", timeout: 60s}}
        steps:
          test: {{run: echo never-runs, services: [broken]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 1, result.output
    assert "service 'broken' exited with code 7 before it was ready" in result.output
    assert "  broken | cannot-start" in (project.last_run() / "test.log").read_text()
    assert_nothing_left(project)


def test_a_service_gets_its_secret_and_its_log_shows_it_masked(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        services:
          echoer:
            run: ["echo token-is-$PP14S_TOKEN", "sleep 600"]
            secrets: [PP14S_TOKEN]
            ready: {{run: "test -n \\"$PP14S_TOKEN\\""}}
        steps:
          test: {{run: "true", services: [echoer]}}
    """)
    result = project.run(
        "run", "-f", "ci.yaml", "--output", "plain", "--secret", "PP14S_TOKEN=hunter2-secret"
    )
    assert result.exit_code == 0, result.output
    log = (project.last_run() / "test.services" / "echoer.log").read_text()
    assert "token-is-***" in log
    assert "hunter2-secret" not in log
    assert_nothing_left(project)


def test_a_service_that_a_step_fails_beside_is_removed_with_it(project: Project) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        services:
          idle: {{run: sleep 600}}
        steps:
          test: {{run: "exit 3", services: [idle]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "--output", "plain")
    assert result.exit_code == 1, result.output
    assert_nothing_left(project)


def test_services_go_with_a_step_that_times_out_or_that_fail_fast_stops(
    project: Project,
) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        services:
          idle: {{run: sleep 600}}
        steps:
          slow: {{run: [echo slow-started, sleep 300], services: [idle], timeout: 3s}}
          stopped: {{run: [echo stopped-started, sleep 300], services: [idle]}}
    """)
    result = project.run("run", "-f", "ci.yaml", "-j", "2", "--output", "plain")
    assert result.exit_code == 1, result.output
    run = project.last_run()
    assert "timed out after 3s" in (run / "slow.log").read_text()
    assert "'slow' timed out (fail-fast)" in (run / "stopped.log").read_text()
    assert_nothing_left(project)


@pytest.fixture
def interrupted_run(project: Project) -> Iterator[subprocess.Popen[str]]:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        services:
          idle: {{run: sleep 600}}
        steps:
          one: {{run: [echo one-started, sleep 300], services: [idle]}}
          two: {{run: [echo two-started, sleep 300], services: [idle]}}
    """)
    process = subprocess.Popen(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "-j", "2", "--output", "plain"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ctrl_c_with_services_up_leaves_no_container_or_network(
    project: Project, interrupted_run: subprocess.Popen[str]
) -> None:
    process = interrupted_run
    assert process.stdout is not None
    seen = ""
    for line in process.stdout:
        seen += line
        if "one-started" in seen and "two-started" in seen:
            break
    else:
        raise AssertionError(f"the steps never started:\n{seen}")
    run_id = project.last_run().name
    assert len(networks_labelled(run_id)) == 2  # up, one per step: what the cleanup must remove
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, seen + output
    assert_nothing_left(project)


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_two_parallel_steps_never_share_a_service(project: Project, engine: str) -> None:
    if engine == "podman" and (why := why_podman_cannot_run()) is not None:
        pytest.skip(why)
    project.write_spec(KV_SPEC)
    try:
        result = project.run(
            "run", "-f", "ci.yaml", "-j", "2", "--engine", engine, "--output", "plain"
        )
        assert result.exit_code == 0, result.output
        run = project.last_run()
        assert "data=from-left\n" in (run / "left.log").read_text()
        assert "data=from-right\n" in (run / "right.log").read_text()
        assert_nothing_left(project, engine)
    finally:
        if engine == "podman":
            _remove_podman_images(project.name)


def _remove_podman_images(pipeline: str) -> None:
    images = subprocess.run(
        ["podman", "images", "-q", "--filter", f"label=io.parapipe.pipeline={pipeline}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if images:
        subprocess.run(["podman", "rmi", "-f", *images], capture_output=True, check=False)
