"""The Docker/Podman command lines and Dockerfile, built without running anything."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from parapipe.engine import build_context, process
from parapipe.engine.api import StepRun, step_command
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import dockerfile
from parapipe.model import CA_BUNDLE_PATH, DockerfileBuild, ImagePlan
from tests.helpers.steps import make_step_run

IMAGE_ID = "sha256:" + "a" * 64


def step_run(**overrides: object) -> StepRun:
    fields: dict[str, object] = {
        "run_id": "20260507-101500-ab12",
        "step": "test",
        "image_id": IMAGE_ID,
        "commands": ("pytest -q", "echo done"),
        "env": {"TOKEN": "s3cret", "PATH": "/venv/bin:/usr/bin", "EMPTY": ""},
        "workdir": "/src",
        "labels": {"io.parapipe.pipeline": "ci"},
    }
    return make_step_run(**{**fields, **overrides})


def test_run_argv() -> None:
    run = step_run()
    argv = argvs.run_argv("docker", run, "parapipe-x-test")
    assert argv == [
        "docker",
        "run",
        "--rm",
        "--pull=never",
        "--name",
        "parapipe-x-test",
        "--label",
        "io.parapipe.pipeline=ci",
        "--label",
        "io.parapipe.run=20260507-101500-ab12",
        "--label",
        "io.parapipe.step=test",
        "-e",
        "TOKEN",
        "-e",
        "PATH=/venv/bin:/usr/bin",
        "-e",
        "EMPTY",
        "-w",
        "/src",
        IMAGE_ID,
        *step_command(run.commands),
    ]
    # The values that are not on the command line travel in the CLI's environment.
    assert argvs.step_cli_env(run.env) == {"TOKEN": "s3cret", "EMPTY": ""}
    assert not any("s3cret" in arg for arg in argv)


def test_run_labels_cannot_override_the_run_and_step_labels() -> None:
    run = step_run(labels={"io.parapipe.run": "someone-else", "team": "a=b"})
    argv = argvs.run_argv("podman", run, "n")
    labels = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--label"]
    assert labels == ["io.parapipe.run=20260507-101500-ab12", "team=a=b", "io.parapipe.step=test"]
    assert argv[0] == "podman"


@pytest.mark.parametrize(
    ("name", "through_env"),
    [
        ("TOKEN", True),
        ("npm_config_registry", True),
        ("PATH", False),
        ("HOME", False),
        ("DOCKER_HOST", False),
        ("docker_host", False),
        ("CONTAINERS_CONF", False),
        ("XDG_RUNTIME_DIR", False),
        ("LD_PRELOAD", False),
        ("GODEBUG", False),
        ("GOOGLE_API_KEY", True),
        ("STORAGE_DRIVER", False),
        ("HTTPS_PROXY", False),
        ("https_proxy", False),
        ("SSL_CERT_FILE", False),
    ],
)
def test_which_variables_travel_through_the_cli_environment(name: str, through_env: bool) -> None:
    assert argvs.passed_through_cli_env(name) is through_env


@pytest.mark.parametrize(
    ("run_id", "step", "expected"),
    [
        ("20260507-101500-ab12", "lint", "parapipe-20260507-101500-ab12-lint"),
        ("r1", "unit_tests.py3", "parapipe-r1-unit_tests.py3"),
    ],
)
def test_container_name(run_id: str, step: str, expected: str) -> None:
    assert argvs.container_name(run_id, step) == expected


def test_container_names_stay_valid_and_distinct() -> None:
    spaced = argvs.container_name("r1", "a b")
    slashed = argvs.container_name("r1", "a/b")
    plain = argvs.container_name("r1", "a-b")
    assert len({spaced, slashed, plain}) == 3
    for name in (spaced, slashed, plain):
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name), name


def test_build_argv() -> None:
    context = Path("/tmp/ctx")
    assert argvs.build_argv(
        "docker", context, "parapipe/ci:0123", Path("/tmp/iid"), ("--force-rm",)
    ) == [
        "docker",
        "build",
        "--force-rm",
        "-f",
        "/tmp/ctx/Dockerfile",
        "-t",
        "parapipe/ci:0123",
        "--iidfile",
        "/tmp/iid",
        "/tmp/ctx",
    ]


def test_base_build_argv() -> None:
    build = DockerfileBuild(
        context=Path("/p"),
        dockerfile=Path("/p/docker/Dockerfile"),
        args={"PY": "3.12", "EXTRA": "a b"},
    )
    assert argvs.base_build_argv("podman", build, Path("/t/iid")) == [
        "podman",
        "build",
        "-f",
        "/p/docker/Dockerfile",
        "--build-arg",
        "PY=3.12",
        "--build-arg",
        "EXTRA=a b",
        "--iidfile",
        "/t/iid",
        "/p",
    ]


def test_the_small_commands() -> None:
    assert argvs.check_argv("docker") == ["docker", "version", "--format", "{{.Server.Version}}"]
    assert argvs.podman_check_argv("podman")[:2] == ["podman", "info"]
    assert argvs.image_id_argv("docker", "busybox") == [
        "docker",
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "busybox",
    ]
    assert argvs.pull_argv("docker", "busybox") == ["docker", "pull", "busybox"]
    assert argvs.list_run_containers_argv("docker", "r1") == [
        "docker",
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        "label=io.parapipe.run=r1",
    ]
    assert argvs.remove_argv("docker", ["a", "b"]) == ["docker", "rm", "-f", "a", "b"]


def plan(**overrides: object) -> ImagePlan:
    fields: dict[str, object] = {
        "tag": "parapipe/ci:0123456789abcdef0123",
        "base_id": IMAGE_ID,
        "source": Path("/project"),
        "files": ("main.py",),
        "workdir": "/src",
        "env": {"SSL_CERT_FILE": CA_BUNDLE_PATH, "GREETING": 'say "hi" to $USER'},
        "setup": ("pip install -e .", "echo 'done'"),
        "ca_bundle": Path("/etc/ssl/certs/ca-certificates.crt"),
        "labels": {"io.parapipe.pipeline": "ci"},
    }
    fields.update(overrides)
    return ImagePlan(**fields)  # type: ignore[arg-type]


def test_dockerfile_text() -> None:
    lines = dockerfile.dockerfile_text(plan()).splitlines()
    assert lines[:7] == [
        "# parapipe parapipe/ci:0123456789abcdef0123",
        f"FROM {IMAGE_ID}",
        'LABEL "io.parapipe.pipeline"="ci"',
        f'COPY ["ca-certificates.crt", "{CA_BUNDLE_PATH}"]',
        f'ENV SSL_CERT_FILE="{CA_BUNDLE_PATH}" GREETING="say \\"hi\\" to \\$USER"',
        'WORKDIR "/src"',
        'COPY ["source/", "./"]',
    ]
    # One RUN per setup command, in JSON (exec) form: no shell quoting between the Dockerfile
    # and the command.
    runs = lines[7:]
    assert [line[:5] for line in runs] == ["RUN [", "RUN ["]
    assert json.loads(runs[0].removeprefix("RUN ")) == build_context.setup_command(
        1, "pip install -e ."
    )
    assert json.loads(runs[1].removeprefix("RUN ")) == build_context.setup_command(2, "echo 'done'")
    assert build_context.setup_command(1, "pip install -e .")[-2:] == ["1", "pip install -e ."]


def test_dockerfile_text_without_ca_env_or_setup() -> None:
    text = dockerfile.dockerfile_text(plan(ca_bundle=None, env={}, setup=(), labels={}))
    assert text == (
        "# parapipe parapipe/ci:0123456789abcdef0123\n"
        f"FROM {IMAGE_ID}\n"
        'WORKDIR "/src"\n'
        'COPY ["source/", "./"]\n'
    )


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ("", '""'),
        ("$HOME ${X}", '"\\$HOME \\${X}"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\path\\", '"C:\\\\path\\\\"'),
        ("tab\there", '"tab\there"'),
    ],
)
def test_dockerfile_quote(value: str, quoted: str) -> None:
    assert dockerfile.dockerfile_quote(value) == quoted


def test_dockerfile_quote_refuses_line_breaks() -> None:
    with pytest.raises(ValueError, match="line break"):
        dockerfile.dockerfile_quote("one\ntwo")


def test_the_setup_script_announces_runs_and_marks_a_failure() -> None:
    # The script is plain sh: run it here, as the builder would in the image.
    ran = subprocess.run(
        build_context.setup_command(2, "echo out; echo err >&2; exit 5"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 5
    assert ran.stdout.splitlines() == [
        "$ echo out; echo err >&2; exit 5",
        "out",
        "parapipe: setup command 2 failed with exit 5",
    ]
    assert build_context.setup_failure(ran.stdout.splitlines()[-1]) == (2, 5)
    passed = subprocess.run(build_context.setup_command(1, "set -- a; true"), capture_output=True)
    assert passed.returncode == 0
    # `sh -e`: a failing command in the middle stops the setup command.
    stopped = subprocess.run(
        build_context.setup_command(1, "false\necho after"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert stopped.returncode == 1
    assert stopped.stdout.splitlines()[-2:] == [
        "echo after",
        "parapipe: setup command 1 failed with exit 1",
    ]


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("parapipe: setup command 3 failed with exit 127", (3, 127)),
        ("#9 0.512 parapipe: setup command 1 failed with exit 2", (1, 2)),  # BuildKit
        ("Step 4/6 : RUN [...]", None),
        ("parapipe: exit 1", None),
    ],
)
def test_setup_failure(line: str, found: tuple[int, int] | None) -> None:
    assert build_context.setup_failure(line) == found


def test_error_line_skips_help_pointers_and_blank_lines() -> None:
    output = [
        "docker: Error response from daemon: No such image: x.",
        "",
        "Run 'docker run --help' for more information",
        "",
    ]
    assert process.error_line(output) == "docker: Error response from daemon: No such image: x."
    assert process.error_line([]) == "no error message"


def test_error_line_prefers_the_error_to_the_hint_after_it() -> None:
    output = [
        "ERROR: BuildKit is enabled but the buildx component is missing or broken.",
        "       Install the buildx component to build images with BuildKit:",
        "       https://docs.docker.com/go/buildx/",
    ]
    assert process.error_line(output) == output[0]
    # Without any line saying "error", the last one.
    assert process.error_line(["Step 2/2 : COPY x .", "COPY failed: no source files"]) == (
        "COPY failed: no source files"
    )


def test_dockerfile_text_puts_prepare_before_the_source_and_mounts_caches() -> None:
    layered = plan(
        prepare=("pip install -r requirements.txt",),
        prepare_files=("requirements.txt",),
        prepare_env={"PIP_NO_COMPILE": "1"},
        caches={"pip": "/root/.cache/pip", "odd": "/a,b"},
    )
    lines = dockerfile.dockerfile_text(
        layered, cache_mounts=True, base="parapipe-base:0123"
    ).splitlines()
    assert lines[1] == "FROM parapipe-base:0123"
    copies = [line for line in lines if line.startswith('COPY ["p') or "source/" in line]
    assert copies == ['COPY ["prepare/", "./"]', 'COPY ["source/", "./"]']
    mounts = (
        '--mount=type=cache,"target=/a,b",id=parapipe-cache-ci-odd '
        "--mount=type=cache,target=/root/.cache/pip,id=parapipe-cache-ci-pip "
    )
    runs = [line for line in lines if line.startswith("RUN ")]
    assert [run.startswith("RUN " + mounts) for run in runs] == [True, True, True]
    assert json.loads(runs[0].removeprefix("RUN " + mounts)) == [
        "env",
        "PIP_NO_COMPILE=1",
        *build_context.setup_command(1, "pip install -r requirements.txt", "prepare"),
    ]
    assert lines.index(runs[0]) < lines.index('COPY ["source/", "./"]') < lines.index(runs[1])
    # Without cache mounts (no BuildKit client) the stages stay, the mounts go.
    plain = dockerfile.dockerfile_text(layered).splitlines()
    assert not any("--mount" in line for line in plain)
    assert plain[1] == f"FROM {IMAGE_ID}"


def test_a_failed_prepare_command_is_named_like_a_setup_command() -> None:
    ran = subprocess.run(
        build_context.prepare_command(2, "exit 3", {"X": "1"}), capture_output=True, text=True
    )
    assert ran.returncode == 3
    failure = build_context.stage_failure(ran.stdout.splitlines()[-1])
    assert failure == ("prepare", 2, 3)
    layered = plan(prepare=("true", "exit 3"), prepare_files=("a",))
    assert (
        build_context.failed_command(layered, failure)
        == "prepare command 2 `exit 3` failed with exit 3"
    )
    assert build_context.setup_failure(ran.stdout.splitlines()[-1]) is None


def test_a_layer_removed_under_buildahs_cache_check_is_told_from_a_failed_build() -> None:
    from parapipe.engine.docker import errors

    raced = (
        "Error: checking if cached image exists from a previous build: getting top layer info:"
        " layer not known"
    )
    assert errors.means_storage_race(raced)
    assert not errors.means_storage_race('Error: building at STEP "RUN make": exit status 2')
    assert not errors.means_storage_race("Error: layer not known")  # not during the cache check
