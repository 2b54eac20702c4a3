"""Secrets on real containers: they reach the step, and nothing parapipe shows or keeps holds
them — not the terminal, the logs, the reports, the step cache, the image, nor `ps`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.docker import BUSYBOX, remove_pipeline_images
from tests.helpers.isolated_engine import IsolatedEngine
from tests.helpers.podman import why_podman_cannot_run
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

# Each value is unique to this test module, so finding it anywhere is a leak, not a coincidence.
TOKEN = f"tok-{uuid.uuid4().hex[:16]}-end"
PASSWORD = f"pw-{uuid.uuid4().hex[:16]}"  # named DOCKER_PASSWORD: it goes through an env file
CERT_LINES = ("-----BEGIN TEST CERT-----", f"cert-{uuid.uuid4().hex}", "-----END TEST CERT-----")
VALUES = (TOKEN, PASSWORD, *CERT_LINES[1:2])
SECRETS = "[API_TOKEN, DOCKER_PASSWORD, CERT]"


def secret_env(**more: str) -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", **more}
    env.update(API_TOKEN=TOKEN, DOCKER_PASSWORD=PASSWORD)
    return env


def cert_file(folder: Path) -> Path:
    # Outside the project: a file in it would be copied into the image as source.
    path = folder / "cert.pem"
    path.write_text("\n".join(CERT_LINES) + "\n")
    return path


def assert_no_value(text: str, where: str) -> None:
    for value in VALUES:
        assert value not in text, f"a secret value is in {where}"


def run_cli(project: Project, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


@dataclass
class LeakyRun:
    project: Project
    done: subprocess.CompletedProcess[str]
    reports: Path


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeakyRun]:
    """One run whose steps print every secret, on stdout and stderr, passing and failing, with
    every report asked for, as on GitHub Actions."""
    root = tmp_path_factory.mktemp("secrets")
    outside = tmp_path_factory.mktemp("outside")
    project = Project(root=root, name=f"test-{uuid.uuid4().hex[:10]}")
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          show:
            run:
              - echo "token=$API_TOKEN password=$DOCKER_PASSWORD"
              - printf '%s\\n' "$CERT"
              - echo "on stderr $API_TOKEN" >&2
            secrets: {SECRETS}
          leak:
            run: ['echo "failing with $API_TOKEN"', "exit 3"]
            secrets: [API_TOKEN]
            needs: [show]
    """)
    reports = outside / "reports"
    reports.mkdir()
    env = secret_env(GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(reports / "summary.md"))
    done = run_cli(
        project,
        "--secret-file", f"CERT={cert_file(outside)}",
        "--report", str(reports / "report.json"),
        "--junit", str(reports / "junit.xml"),
        "--timeline", str(reports / "timeline.html"),
        env=env,
    )  # fmt: skip
    yield LeakyRun(project, done, reports)
    remove_pipeline_images(project.name)
    ids = subprocess.run(
        ["docker", "image", "ls", "-q", f"parapipe/{project.name}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(["docker", "image", "rm", "-f", *set(ids)], capture_output=True, check=False)


def test_a_step_gets_its_secrets_and_the_terminal_shows_them_masked(leaky_run: LeakyRun) -> None:
    done = leaky_run.done
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    # `***` where each value was printed: the values reached the step, whole.
    assert "token=*** password=***" in output
    assert "on stderr ***" in output
    # Every line of a value of several lines is masked, as output arrives line by line.
    assert "***\n***\n***\n" in output
    assert CERT_LINES[0] not in output
    assert "failing with ***" in output
    assert_no_value(output, "the terminal")


def test_no_log_cache_entry_or_other_file_under_parapipe_holds_a_value(
    leaky_run: LeakyRun,
) -> None:
    state = leaky_run.project.root / ".parapipe"
    files = [path for path in state.rglob("*") if path.is_file()]
    assert any(path.name == "show.log" for path in files)
    for path in files:
        assert_no_value(path.read_bytes().decode("utf-8", "replace"), str(path))
    (show_log,) = [path for path in files if path.name == "show.log"]
    assert "token=*** password=***" in show_log.read_text()


def test_no_report_holds_a_value(leaky_run: LeakyRun) -> None:
    reports = sorted(leaky_run.reports.iterdir())
    assert [p.name for p in reports] == ["junit.xml", "report.json", "summary.md", "timeline.html"]
    for path in reports:
        assert_no_value(path.read_text(), path.name)
    assert "failing with ***" in (leaky_run.reports / "junit.xml").read_text()


def test_the_image_holds_no_value_in_its_history_or_config(leaky_run: LeakyRun) -> None:
    report = json.loads((leaky_run.reports / "report.json").read_text())
    tag = report["image"]["tag"]
    for argv in (
        ["docker", "image", "history", "--no-trunc", tag],
        ["docker", "image", "inspect", tag],
    ):
        shown = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        assert "parapipe-setup" in shown or "/src" in shown  # the pipeline image's own layers
        assert_no_value(shown, " ".join(argv[:3]))


def test_a_missing_secret_exits_2_with_one_located_line_before_anything_starts(
    project: Project,
) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          lint: {{run: "true"}}
          publish:
            run: ./publish
            secrets: [PARAPIPE_TEST_MISSING_TOKEN]
    """)
    env = {k: v for k, v in secret_env().items() if k != "PARAPIPE_TEST_MISSING_TOKEN"}
    done = run_cli(project, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "ci.yaml:6:3: step 'publish' needs secret 'PARAPIPE_TEST_MISSING_TOKEN', which is not"
        " set: set PARAPIPE_TEST_MISSING_TOKEN in the environment, or pass"
        " --secret PARAPIPE_TEST_MISSING_TOKEN=VALUE"
        " or --secret-file PARAPIPE_TEST_MISSING_TOKEN=PATH"
    ]
    # Nothing started: no run folder, no image built, no container.
    assert not (project.root / ".parapipe").exists()
    images = subprocess.run(
        ["docker", "image", "ls", "-q", f"parapipe/{project.name}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert images.stdout == ""
    # Leaving the step out needs no secret.
    assert run_cli(project, "lint", env=env).returncode == 0


# Where each engine keeps a container's config on disk: a secret in `-e`/`--env-file` lands there.
CONTAINER_CONFIGS = {
    "docker": "/var/lib/docker/containers/*/*.json",
    "podman": "/var/lib/containers/storage/overlay-containers/*/userdata/*.json",
}
# How a step may start: in a container the pool started ahead of it; in one of its own, because
# the pool is off, because it mounts a cache, or created to copy its outputs out.
MODES = {
    "pooled": ("", ()),
    "no-prewarm": ("", ("--no-prewarm",)),
    "caches": ("caches: {c: /c}", ()),
    "outputs": ("outputs: [out.txt]", ("--no-prewarm",)),
}


def _engine_ready(engine: str) -> None:
    if engine == "podman":
        why = why_podman_cannot_run()
        if why is not None:
            pytest.skip(why)


@pytest.mark.parametrize("engine", ["docker", "podman", "docker-isolated", "podman-isolated"])
@pytest.mark.parametrize("mode", list(MODES))
def test_no_value_is_in_ps_or_in_any_container_config_while_a_step_runs(
    project: Project,
    tmp_path_factory: pytest.TempPathFactory,
    engine: str,
    mode: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a step with secrets runs, no value shows in `ps`, in `docker inspect`/`podman
    inspect` of any container, or in the container configs the engine writes to disk: the
    values reach the step on its stdin, whichever way its container started. Also on engines
    that share no file with the host (`*-isolated`, through `DOCKER_HOST`/`CONTAINER_HOST`)."""
    configs_glob = CONTAINER_CONFIGS.get(engine, "")
    if engine.endswith("-isolated"):
        isolated: IsolatedEngine = request.getfixturevalue(f"isolated_{engine.split('-')[0]}")
        for variable, value in isolated.env().items():
            monkeypatch.setenv(variable, value)
        engine, configs_glob = isolated.engine, isolated.container_configs
    else:
        _engine_ready(engine)
    outside = tmp_path_factory.mktemp("outside")
    extra, flags = MODES[mode]
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          first: {{run: "true"}}
          hold:
            run:
              - echo "started with $API_TOKEN $DOCKER_PASSWORD"; echo held > out.txt
              - while [ ! -e /tmp/release ]; do sleep 0.1; done
            secrets: {SECRETS}
            needs: [first]
            {extra}
    """)
    output = outside / "output.txt"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml", "--output", "plain",
             "--engine", engine, *flags, "--secret-file", f"CERT={cert_file(outside)}"],
            cwd=project.root, env=secret_env(), text=True, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "started with" not in output.read_text():
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, f"the step never started:\n{output.read_text()}"
            time.sleep(0.1)
        # The step holds until released: every sample is taken while its container runs.
        for _ in range(3):
            sample = _ps()
            # The attached CLI: `run ... --label`, or `start` for a container `create`d.
            assert f"io.parapipe.pipeline={project.name}" in sample or (
                mode == "outputs" and "start --attach --interactive parapipe-" in sample
            )
            assert_no_value(sample, "ps -eo args")
            time.sleep(0.05)
        containers = _containers(project, engine)
        assert containers
        inspected = subprocess.run(
            [engine, "inspect", *containers], capture_output=True, text=True, check=True
        ).stdout
        assert_no_value(inspected, f"{engine} inspect")
        configs = list(Path("/").glob(configs_glob.lstrip("/")))
        assert configs, f"{engine} keeps its containers' configs elsewhere"
        for config in configs:
            with suppress(OSError):  # a container removed meanwhile
                assert_no_value(config.read_text(errors="replace"), str(config))
        # Idle containers started ahead of steps may be there too; releasing them is harmless.
        for container in containers:
            subprocess.run([engine, "exec", container, "touch", "/tmp/release"], check=False)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        # Killed, parapipe cannot remove the container it started; the test does.
        if left := _containers(project, engine):
            subprocess.run([engine, "rm", "-f", *left], capture_output=True, check=False)
        if mode == "caches":
            volume = f"parapipe-cache-{project.name}-c"
            subprocess.run([engine, "volume", "rm", volume], capture_output=True, check=False)
        if engine == "podman":
            built = subprocess.run(
                ["podman", "image", "ls", "-q", f"parapipe/{project.name}"],
                capture_output=True, text=True, check=False,
            ).stdout.split()  # fmt: skip
            if built:
                subprocess.run(["podman", "image", "rm", "-f", *set(built)], check=False)
            remove_pipeline_images(project.name, "podman")  # its source stages too
    shown = output.read_text()
    assert process.returncode == 0, shown
    assert "started with *** ***" in shown
    assert_no_value(shown, "the output")
    journal = project.last_run() / "pool.txt"  # none without the pool
    pool = journal.read_text() if journal.exists() else ""
    assert ("takes step 'hold'" in pool) is (mode == "pooled"), pool
    if mode == "outputs":
        assert (project.last_run() / "artifacts" / "hold" / "out.txt").read_text() == "held\n"


def _containers(project: Project, engine: str = "docker") -> list[str]:
    return subprocess.run(
        [engine, "ps", "-aq", "--filter", f"label=io.parapipe.pipeline={project.name}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip


def _ps() -> str:
    return subprocess.run(
        ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout
