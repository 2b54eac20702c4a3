"""The split hand-off end to end, on real containers: the image is built and saved in one place,
removed with its step cache, loaded, and a step runs with `--no-deps` without building anything.
A tampered archive and one built from another spec are refused (exit 2) and leave nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.docker import BUSYBOX, docker_answers
from tests.helpers.podman import why_podman_cannot_run
from tests.helpers.project import CliResult, Project

SPEC = f"""
    image:
      from: {BUSYBOX}
      setup: [echo SETUP > /setup.txt]
    steps:
      build:
        run: [mkdir -p dist, cat /setup.txt > dist/app.txt]
        outputs: [dist/]
      test: {{run: cat dist/app.txt, needs: [build]}}
"""


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if not docker_answers():
        pytest.skip("no Docker daemon answers (run scripts/setup, which starts one)")
    if name == "podman" and (why := why_podman_cannot_run()) is not None:
        pytest.skip(why)
    return name


@pytest.fixture
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outside the project: a file inside it would be one of the image's source files."""
    return tmp_path_factory.mktemp("archives")


@pytest.fixture
def cli(engine: str, project: Project) -> Iterator[Project]:
    yield project
    if engine == "podman":  # the project fixture removes Docker's
        listed = subprocess.run(
            ["podman", "image", "ls", "-q", f"parapipe/{project.name}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if ids := sorted(set(listed.stdout.split())):
            subprocess.run(["podman", "image", "rm", "-f", *ids], capture_output=True, check=False)


def image_cmd(project: Project, engine: str, *args: str) -> CliResult:
    return project.run("image", *args, "-f", "ci.yaml", "--engine", engine)


def pipeline_images(engine: str, project: Project) -> list[str]:
    listed = subprocess.run(
        [engine, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", f"parapipe/{project.name}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def image_id(engine: str, ref: str) -> str:
    inspected = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=True,
    )
    return inspected.stdout.strip()


def build_and_save(project: Project, engine: str, archive: Path, setup: str) -> str:
    project.write_spec(SPEC.replace("SETUP", setup))
    built = image_cmd(project, engine, "build")
    assert built.exit_code == 0, built.output
    saved = image_cmd(project, engine, "save", "-o", str(archive))
    assert saved.exit_code == 0, saved.output
    assert archive.stat().st_size > 0
    tag = image_cmd(project, engine, "id").stdout.strip()
    assert tag.startswith(f"parapipe/{project.name}:")
    return tag


def forget(engine: str, project: Project, tag: str) -> None:
    """As on another runner: the image and the step cache are gone (the seeded base stays)."""
    subprocess.run([engine, "rmi", tag], capture_output=True, check=True)
    shutil.rmtree(project.root / ".parapipe" / "cache", ignore_errors=True)
    assert pipeline_images(engine, project) == []


def test_a_loaded_image_runs_a_step_with_nothing_built(
    cli: Project, engine: str, archives: Path
) -> None:
    archive = archives / "image.tar.zst"
    tag = build_and_save(cli, engine, archive, setup="made-once")
    assert image_cmd(cli, engine, "build").stdout.startswith(f"is there, nothing to build: {tag}")
    forget(engine, cli, tag)

    loaded = image_cmd(cli, engine, "load", str(archive))
    assert loaded.exit_code == 0, loaded.output
    assert loaded.stdout.startswith(f"loaded {tag} ")

    result = cli.run(
        "run", "-f", "ci.yaml", "build", "--no-deps", "--engine", engine,
        "--output", "plain", "--report", str(archives / "report.json"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"image: reused {tag} (nothing to build)" in result.output
    report = json.loads((archives / "report.json").read_text())
    assert report["image"]["reused"] is True
    build_log = (cli.last_run() / "image.build.log").read_text()
    assert "made-once" not in build_log  # no setup command ran: no build
    assert (cli.last_run() / "artifacts/build/dist/app.txt").read_text() == "made-once\n"


def test_a_tampered_archive_is_refused_and_leaves_nothing(
    cli: Project, engine: str, archives: Path
) -> None:
    archive = archives / "image.tar.zst"
    tag = build_and_save(cli, engine, archive, setup="tampered")
    forget(engine, cli, tag)
    base_before = image_id(engine, BUSYBOX)
    data = bytearray(archive.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    archive.write_bytes(bytes(data))

    refused = image_cmd(cli, engine, "load", str(archive))
    assert refused.exit_code == 2, refused.output
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"parapipe: {archive}: "), line
    assert "Traceback" not in refused.output
    assert pipeline_images(engine, cli) == []
    assert image_id(engine, BUSYBOX) == base_before


def test_an_archive_of_another_spec_is_refused_naming_what_differs(
    cli: Project, engine: str, archives: Path
) -> None:
    archive = archives / "other.tar.zst"
    other_tag = build_and_save(cli, engine, archive, setup="other-spec")
    forget(engine, cli, other_tag)
    cli.write_spec(SPEC.replace("SETUP", "this-spec"))  # what this checkout plans

    refused = image_cmd(cli, engine, "load", str(archive))
    assert refused.exit_code == 2, refused.output
    (line,) = refused.stderr.strip().splitlines()
    assert f"holds {other_tag}, but {cli.spec} plans parapipe/{cli.name}:" in line, line
    # The spec is one of the source files too, here.
    assert line.endswith("what differs: image.setup; the source files; removed what it loaded")
    assert pipeline_images(engine, cli) == []  # never left for a run to find
    assert image_id(engine, BUSYBOX)  # the seeded base is still there

    garbage = archives / "not-an-archive"
    garbage.write_text("hello\n")
    refused = image_cmd(cli, engine, "load", str(garbage))
    assert refused.exit_code == 2
    assert (
        refused.stderr.strip()
        == f"parapipe: {garbage}: not an image archive (neither zstd, gzip nor tar)"
    )
