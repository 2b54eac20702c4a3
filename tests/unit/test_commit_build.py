"""`image.caches` without BuildKit: the command lines, script and `--change` instructions of the
run-and-commit build, and the Dockerfiles around it, built without running anything (the
scripts run here with the host's `sh`, as they would in the image)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from parapipe.engine.api import cache_volume_name
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import buildkit, dockerfile, stages
from parapipe.engine.docker.commit_build import (
    ImageCommand,
    build_container_name,
    cache_volumes,
    commit_changes,
    parse_image_command,
    prepare_script,
    setup_script,
    stage_run_argv,
)
from parapipe.model import ImagePlan

BASE_ID = "sha256:" + "c" * 64


def plan(**overrides: object) -> ImagePlan:
    fields: dict[str, object] = {
        "tag": "parapipe/ci:0123456789abcdef0123",
        "base_id": BASE_ID,
        "source": Path("/project"),
        "files": ("deps.txt", "main.py"),
        "workdir": "/src",
        "env": {"GREETING": "hi"},
        "setup": ("echo setup-1", "echo setup-2"),
        "ca_bundle": None,
        "labels": {"io.parapipe.pipeline": "my ci"},
        "prepare_files": ("deps.txt",),
        "prepare": ('echo "prepare $ONLY_PREPARE"', "exit 4", "echo never"),
        "prepare_env": {"ONLY_PREPARE": "it's set"},
        "caches": {"pip": "/root/.cache/pip", "apt": "/var/cache/apt"},
        "source_tag": "parapipe-source/ci:aaaaaaaaaaaaaaaaaaaa",
        "prepare_tag": "parapipe-prepare/ci:bbbbbbbbbbbbbbbbbbbb",
    }
    fields.update(overrides)
    return ImagePlan(**fields)  # type: ignore[arg-type]


def test_the_caches_are_the_volumes_steps_mount() -> None:
    volumes = cache_volumes(plan())
    assert [(v.name, v.cache, v.path) for v in volumes] == [
        (cache_volume_name("my ci", "apt"), "apt", "/var/cache/apt"),
        (cache_volume_name("my ci", "pip"), "pip", "/root/.cache/pip"),
    ]
    # Labelled as steps' volumes are, so that `cache prune --volumes` finds them.
    assert [v.labels for v in volumes] == [
        {"io.parapipe.pipeline": "my ci", "io.parapipe.cache": "apt"},
        {"io.parapipe.pipeline": "my ci", "io.parapipe.cache": "pip"},
    ]


def test_stage_run_argv() -> None:
    layered = plan()
    apt, pip = (volume.name for volume in cache_volumes(layered))
    argv = stage_run_argv("docker", layered, "parapipe-x.build-setup-1", "img:1", "SCRIPT")
    assert argv == [
        "docker", "run", "--pull=never", "--name", "parapipe-x.build-setup-1",
        "--label", "io.parapipe.pipeline=my ci",
        "-v", f"{apt}:/var/cache/apt", "-v", f"{pip}:/root/.cache/pip",
        "--entrypoint", "", "img:1", "sh", "-c", "SCRIPT",
    ]  # fmt: skip
    # Nothing that would change the committed image's config: no env, workdir, user or --rm.
    assert not {"-e", "-w", "-u", "--rm", "--user", "--workdir"} & set(argv)


def run_script(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, check=False, cwd=cwd
    )


def test_the_prepare_script_runs_each_command_with_its_env_and_stops_at_a_failure(
    tmp_path: Path,
) -> None:
    ran = run_script(prepare_script(plan()), tmp_path)
    assert ran.returncode == 4
    assert ran.stdout.splitlines() == [
        '$ echo "prepare $ONLY_PREPARE"',
        "prepare it's set",
        "$ exit 4",
        "parapipe: prepare command 2 failed with exit 4",
    ]


def test_the_setup_script_runs_without_the_prepare_env(tmp_path: Path) -> None:
    ran = run_script(setup_script(plan(setup=('echo "[$ONLY_PREPARE]"', "echo two"))), tmp_path)
    assert ran.returncode == 0
    assert ran.stdout.splitlines() == ['$ echo "[$ONLY_PREPARE]"', "[]", "$ echo two", "two"]


@pytest.mark.parametrize(
    ("command", "labels", "changes"),
    [
        # busybox: no ENTRYPOINT (the container's `--entrypoint ""` leaves none), a CMD.
        (ImageCommand(None, ["sh"]), {}, ['CMD ["sh"]']),
        # An ENTRYPOINT and no CMD: ENTRYPOINT alone also clears the container's command.
        (ImageCommand(["/entry", "a b"], None), {}, ['ENTRYPOINT ["/entry", "a b"]']),
        (
            ImageCommand(["/entry"], []),
            {"io.parapipe.inputs": '{"a":"$x"}'},
            [
                'ENTRYPOINT ["/entry"]',
                "CMD []",
                'LABEL "io.parapipe.inputs"="{\\"a\\":\\"\\$x\\"}"',
            ],
        ),
    ],
)
def test_commit_changes(command: ImageCommand, labels: dict[str, str], changes: list[str]) -> None:
    assert commit_changes(command, labels) == changes


def test_commit_argv() -> None:
    argv = argvs.commit_argv("docker", "box", "parapipe/ci:1", ['CMD ["sh"]', "LABEL a=b"])
    assert argv == [
        "docker", "commit", "--change", 'CMD ["sh"]', "--change", "LABEL a=b", "box",
        "parapipe/ci:1",
    ]  # fmt: skip
    assert argvs.commit_argv("docker", "box", "t") == ["docker", "commit", "box", "t"]


def test_parse_image_command() -> None:
    assert parse_image_command('null\n["sh"]\n') == ImageCommand(None, ["sh"])
    assert parse_image_command('["/e"]\nnull') == ImageCommand(["/e"], None)
    for bad in ("null", '{"a": 1}\nnull', "[1]\nnull", "nope\nnull"):
        with pytest.raises(ValueError, match=r"two lines|list of strings|Expecting value"):
            parse_image_command(bad)


def test_build_container_names_are_valid_and_distinct() -> None:
    first = build_container_name("my ci", "prepare")
    assert first.startswith("parapipe-my-ci.build-prepare-")
    assert argvs.valid_name(first) == first
    assert build_container_name("my ci", "prepare") != first


def test_the_prepare_stage_dockerfiles() -> None:
    layered = plan()
    assert stages.unprepared_dockerfile(layered).splitlines() == [
        "# parapipe parapipe-prepare/ci:bbbbbbbbbbbbbbbbbbbb (before prepare)",
        f"FROM {BASE_ID}",
        'LABEL "io.parapipe.pipeline"="my ci"',
        'ENV GREETING="hi"',
        'WORKDIR "/src"',
        'COPY ["prepare/", "./"]',
    ]
    # The same lines as the one-image Dockerfile up to there, so the layer cache shares them.
    whole = dockerfile.dockerfile_text(layered).splitlines()
    assert whole[1:6] == stages.unprepared_dockerfile(layered).splitlines()[1:]
    assert stages.prepared_source_dockerfile(layered).splitlines() == [
        "# parapipe parapipe-source/ci:aaaaaaaaaaaaaaaaaaaa",
        "FROM parapipe-prepare/ci:bbbbbbbbbbbbbbbbbbbb",
        'COPY ["source/", "./"]',
        'LABEL io.parapipe.source="aaaaaaaaaaaaaaaaaaaa"',
    ]


@pytest.mark.parametrize(
    ("answer", "tags"),
    [
        ('["busybox:latest","b:1"]', ["busybox:latest", "b:1"]),
        ("[]", []),
        ("null", []),
        ('["<none>:<none>"]', []),
        ("", []),
    ],
)
def test_a_base_is_named_by_a_tag_it_has(answer: str, tags: list[str]) -> None:
    assert buildkit.existing_tags(answer) == tags
