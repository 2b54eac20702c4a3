"""A service's secrets, on real containers: they reach the service (its `run:` commands, or the
image's own ENTRYPOINT and CMD) and its readiness check on stdin, as a step's do, so neither
`inspect` of the running container nor the daemon's files hold them, and its log masks them.
An image without `sh` cannot take them: one line says so."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.docker import BUSYBOX, image_present, remove_pipeline_images
from tests.helpers.podman import why_podman_cannot_run
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

POSTGRES = "parapipe-seed/postgres:bookworm"  # seeded by scripts/seed-images
SECRET = "pp14x-hunter2-value"
ENGINES = ["docker", "podman"]

# The step says it waits, then waits until the test, having inspected every container of the
# run, creates /tmp/go in each: the services are inspected while they run, with no timing.
WAITING_STEP = """
            secrets: [PP14X_TOKEN]
            run:
              - echo step-waiting
              - "i=0; until [ -e /tmp/go ]; do i=$((i+1)); [ $i -lt 1800 ] || exit 9; sleep 0.1; done"
"""


def skip_unless_runs(engine: str) -> None:
    if engine == "podman" and (why := why_podman_cannot_run()) is not None:
        pytest.skip(why)


@pytest.fixture
def engine_project(project: Project) -> Iterator[Project]:
    """`project`, whose pipeline images go from Podman's store too (conftest removes Docker's)."""
    yield project
    remove_pipeline_images(project.name, "podman")


@pytest.fixture
def image_with_cmd(engine: str) -> Iterator[str]:
    """busybox with a CMD that says the secret it got: a service of the image's own command."""
    skip_unless_runs(engine)
    tag = f"pp14x-cmd-{uuid.uuid4().hex[:10]}:test"
    created = _ok(engine, "create", "--pull=never", BUSYBOX).strip()
    try:
        change = 'CMD ["sh", "-c", "echo cmd-token-is-$PP14X_TOKEN; exec sleep 600"]'
        _ok(engine, "commit", "--change", change, created, tag)
    finally:
        subprocess.run([engine, "rm", "-f", created], capture_output=True, check=False)
    yield tag
    subprocess.run([engine, "rmi", "-f", tag], capture_output=True, check=False)


@pytest.fixture
def image_without_sh() -> Iterator[str]:
    """An image holding busybox's binary alone: no /bin/sh."""
    tag = f"pp14x-nosh-{uuid.uuid4().hex[:10]}:test"
    created = _ok("docker", "create", "--pull=never", BUSYBOX).strip()
    with tempfile.TemporaryDirectory(prefix="pp14x-nosh-") as folder:
        (Path(folder) / "bin").mkdir()
        try:
            _ok("docker", "cp", f"{created}:/bin/busybox", f"{folder}/bin/busybox")
        finally:
            subprocess.run(["docker", "rm", "-f", created], capture_output=True, check=False)
        tar = subprocess.run(["tar", "-C", folder, "-c", "."], capture_output=True, check=True)
        subprocess.run(
            ["docker", "import", "-c", 'CMD ["/bin/busybox", "sleep", "600"]', "-", tag],
            input=tar.stdout, capture_output=True, check=True,
        )  # fmt: skip
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def _ok(engine: str, *argv: str) -> str:
    return subprocess.run([engine, *argv], capture_output=True, text=True, check=True).stdout


def run_inspecting_services(
    project: Project, engine: str, secret: str = "PP14X_TOKEN"
) -> tuple[str, list[str]]:
    """Run the pipeline; once its step waits, `inspect` every container of the run, then let
    the step end. The run's output, and the inspections of its services' containers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "--engine", engine,
         "--output", "plain", "--secret", f"{secret}={SECRET}"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        seen = ""
        for line in process.stdout:
            seen += line
            if "step-waiting" in line:
                break
        else:
            raise AssertionError(f"the step never started:\n{seen}")
        run_id = project.last_run().name
        filter_ = f"label=io.parapipe.run={run_id}"
        containers = _ok(engine, "ps", "-q", "--filter", filter_).split()
        inspected = [_ok(engine, "container", "inspect", c) for c in containers]
        output = _let_the_step_end(process, engine, filter_)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, seen + output
    services = [i for i in inspected if "io.parapipe.service" in _labels(i)]
    return seen + output, services


def _let_the_step_end(process: subprocess.Popen[str], engine: str, filter_: str) -> str:
    """Create /tmp/go in every container of the run until the run ends: an `exec` that fails
    on a busy engine is tried again rather than leaving the step waiting. The rest of its
    output."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for container in _ok(engine, "ps", "-q", "--filter", filter_).split():
            subprocess.run([engine, "exec", container, "touch", "/tmp/go"], capture_output=True)
        try:
            output, _ = process.communicate(timeout=3)
            return output
        except subprocess.TimeoutExpired:
            continue
    raise AssertionError("the run did not end within 120 s of its step being let go")


def _labels(inspected: str) -> dict[str, str]:
    labels: dict[str, str] = json.loads(inspected)[0]["Config"]["Labels"]
    return labels


@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_services_secret_reaches_it_and_its_check_never_its_config(
    engine_project: Project, engine: str
) -> None:
    skip_unless_runs(engine)
    engine_project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        services:
          echoer:
            run: ["echo token-is-$PP14X_TOKEN", "exec sleep 600"]
            secrets: [PP14X_TOKEN]
            ready: {{run: "test \\"$PP14X_TOKEN\\" = {SECRET}", timeout: 60s}}
        steps:
          test:
            services: [echoer]{WAITING_STEP}
    """)
    output, services = run_inspecting_services(engine_project, engine)
    assert len(services) == 1, output
    assert SECRET not in services[0]
    env = json.loads(services[0])[0]["Config"]["Env"]
    assert not [variable for variable in env if variable.startswith("PP14X_TOKEN=")]
    log = (engine_project.last_run() / "test.services" / "echoer.log").read_text()
    assert "token-is-***" in log
    assert SECRET not in log


@pytest.mark.parametrize("engine", ENGINES)
def test_a_service_of_the_images_own_command_gets_its_secret(
    engine_project: Project, engine: str, image_with_cmd: str
) -> None:
    engine_project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        services:
          echoer:
            image: {image_with_cmd}
            secrets: [PP14X_TOKEN]
        steps:
          test:
            services: [echoer]{WAITING_STEP}
    """)
    output, services = run_inspecting_services(engine_project, engine)
    assert len(services) == 1, output
    assert SECRET not in services[0]
    log = (engine_project.last_run() / "test.services" / "echoer.log").read_text()
    assert "cmd-token-is-***" in log
    assert SECRET not in log


@pytest.mark.parametrize("engine", ENGINES)
def test_postgresql_takes_its_password_as_a_secret(engine_project: Project, engine: str) -> None:
    skip_unless_runs(engine)
    present = image_present(POSTGRES) if engine == "docker" else _in_podman(POSTGRES)
    if not present:
        pytest.skip(f"{POSTGRES} is not seeded in {engine} (run scripts/seed-images)")
    # With POSTGRES_PASSWORD the seeded image asks for the password: the step's query passes
    # only if the server got the secret.
    engine_project.write_spec(f"""
        image: {{from: "{POSTGRES}"}}
        services:
          db:
            image: {POSTGRES}
            secrets: [POSTGRES_PASSWORD]
            ready: {{run: "pg_isready -h 127.0.0.1", timeout: 120s, interval: 200ms}}
        steps:
          test:
            services: [db]
            secrets: [POSTGRES_PASSWORD]
            run:
              - PGPASSWORD=$POSTGRES_PASSWORD psql -h db -U postgres -Atc "select 'pg-' || 'ok'"
              - PGPASSWORD=wrong psql -h db -U postgres -Atc "select 1" || echo wrong-refused
              - echo step-waiting
              - "i=0; until [ -e /tmp/go ]; do i=$((i+1)); [ $i -lt 1800 ] || exit 9; sleep 0.1; done"
    """)
    output, services = run_inspecting_services(engine_project, engine, "POSTGRES_PASSWORD")
    assert len(services) == 1, output
    assert SECRET not in services[0]
    step_log = (engine_project.last_run() / "test.log").read_text()
    assert "pg-ok" in step_log
    assert "wrong-refused" in step_log


def _in_podman(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


def test_a_service_image_without_sh_cannot_take_secrets_and_says_so(
    project: Project, image_without_sh: str
) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        services:
          bare:
            image: {image_without_sh}
            secrets: [PP14X_TOKEN]
        steps:
          test: {{run: echo never-runs, services: [bare]}}
    """)
    result = project.run(
        "run", "-f", "ci.yaml", "--output", "plain", "--secret", f"PP14X_TOKEN={SECRET}"
    )
    assert result.exit_code == 1, result.output
    assert (
        "service 'bare' has secrets, which reach it through /bin/sh, and its image has no sh"
        in result.output
    )
    assert "never-runs" not in (project.last_run() / "test.log").read_text()
