"""A one-file edit builds the source stage as a delta on the previous one, for real: the log
says so, deletions are applied, long chains and large deltas fall back to a full copy, and the
image a delta makes holds exactly what a clean build of the same source holds (files, modes,
symlinks, deletions, and what `setup` saw), on Docker and Podman."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from parapipe.engine.docker import buildkit
from tests.helpers.docker import (
    BUSYBOX,
    docker_answers,
    prune_cache_mounts,
    remove_cache_volumes,
    remove_pipeline_images,
)
from tests.helpers.podman import why_podman_cannot_run
from tests.helpers.project import Project

pytestmark = pytest.mark.skipif(not docker_answers(), reason="the Docker daemon does not answer")

SPEC = f"""\
image:
  from: {BUSYBOX}
  exclude: [ci.yaml]  # a spec edit is not a source edit here
  setup: ["find . | sort > /setup-saw.txt"]
steps:
  show: {{run: cat keep.txt}}
"""

# Every path under the workdir with its type and mode, a digest for files, the target for
# symlinks; then what setup saw. Busybox has all of it.
LISTING = r"""
find . -mindepth 1 | sort | while read -r path; do
  kind=$(stat -c %F "$path"); mode=$(stat -c %a "$path")
  if [ -L "$path" ]; then what=$(readlink "$path")
  elif [ -f "$path" ]; then what=$(sha256sum "$path" | cut -d' ' -f1)
  else what=-; fi
  echo "$path|$kind|$mode|$what"
done
echo "setup saw:"; cat /setup-saw.txt
"""


@pytest.fixture(params=["docker", "docker-buildkit", "docker-commit", "podman"])
def engine(
    request: pytest.FixtureRequest, project: Project, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The engine to build with. `docker-buildkit`: Docker with `image.caches`, which builds
    with BuildKit through whichever client answers with it (Debian's own here).
    `docker-commit`: the same without BuildKit (`DOCKER_BUILDKIT=0`), so `prepare` and `setup`
    run in a container that is committed."""
    name: str = request.param
    if name == "docker-commit":
        monkeypatch.setenv("DOCKER_BUILDKIT", "0")
        prepared = '  prepare: {files: [keep.txt], run: ["cat keep.txt > /prepared.txt"]}\n'
        cached = SPEC.replace("steps:", "  caches: {c: /cache}\nsteps:")
        project.write_spec(cached.replace("  setup:", prepared + "  setup:"))
    if name == "podman" and (why := why_podman_cannot_run()) is not None:
        pytest.skip(why)
    if name == "docker-buildkit":
        if buildkit.candidates("docker")[-1] != buildkit.DISTRIBUTION_CLIENT:
            pytest.skip("no client here builds with BuildKit")
        # The marker names the build cache's mount, so that it can be pruned afterwards.
        with_cache = SPEC.replace("/setup-saw.txt", f"/setup-saw.txt; : {project.name}")
        project.write_spec(with_cache.replace("steps:", "  caches: {c: /cache}\nsteps:"))
    yield name.partition("-")[0]
    if name == "podman":
        remove_pipeline_images(project.name, "podman")
    if name == "docker-buildkit":
        prune_cache_mounts(project.name)
    if name == "docker-commit":
        remove_cache_volumes(project.name)


def write_tree(root: Path) -> None:
    (root / "keep.txt").write_text("kept\n")
    (root / "edit.txt").write_text("before\n")
    (root / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (root / "gone").mkdir()
    (root / "gone" / "deep").mkdir()
    (root / "gone" / "deep" / "file.txt").write_text("deleted later\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "kept.py").write_text("x = 1\n")
    (root / "pkg" / "gone.py").write_text("y = 2\n")
    (root / "becomes-link.txt").write_text("a file first\n")
    os.symlink("keep.txt", root / "link")
    (root / "big.bin").write_bytes(b"\0" * 200_000)  # so a one-file edit is a small share


def edit_tree(root: Path) -> None:
    (root / "edit.txt").write_text("after\n")
    (root / "tool.sh").chmod(0o755)
    shutil.rmtree(root / "gone")
    (root / "pkg" / "gone.py").unlink()
    (root / "pkg" / "new").mkdir()
    (root / "pkg" / "new" / "added.py").write_text("z = 3\n")
    (root / "becomes-link.txt").unlink()
    os.symlink("edit.txt", root / "becomes-link.txt")
    (root / "link").unlink()
    os.symlink("pkg/kept.py", root / "link")


def run(project: Project, engine: str) -> str:
    """Run the pipeline; the image part of its log."""
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", "--engine", engine)
    assert result.exit_code == 0, result.output
    return (project.last_run() / "image.build.log").read_text()


def image_tag(project: Project) -> str:
    log = (project.last_run() / "image.build.log").read_text()
    built = [line for line in log.splitlines() if f"parapipe/{project.name}:" in line]
    return f"parapipe/{project.name}:" + built[-1].split(f"parapipe/{project.name}:")[1].split()[0]


def listing(engine: str, tag: str) -> str:
    shown = subprocess.run(
        [engine, "run", "--rm", "--pull=never", tag, "sh", "-c", LISTING],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return shown.stdout


def forget_everything(project: Project, engine: str) -> None:
    """A clean build from here: no image of the pipeline, no remembered source stage."""
    if engine == "docker":
        remove_pipeline_images(project.name)
    else:
        remove_pipeline_images(project.name, "podman")
    shutil.rmtree(project.root / ".parapipe" / "sources")


def test_a_delta_builds_what_a_clean_build_does(project: Project, engine: str) -> None:
    if not project.spec.exists():
        project.write_spec(SPEC)
    write_tree(project.root)
    assert "image: full copy (no previous source image)" in run(project, engine)
    edit_tree(project.root)
    log = run(project, engine)
    # edit.txt, tool.sh (mode), added.py, becomes-link.txt (file -> symlink), link (target);
    # gone/deep/file.txt and pkg/gone.py deleted.
    assert "image: delta of 5 changed, 2 removed file(s) on parapipe-source/" in log
    tag = image_tag(project)
    by_delta = listing(engine, tag)
    assert "./gone" not in by_delta  # the folders only deleted files held went too
    assert "./pkg/gone.py" not in by_delta
    assert "./pkg/new/added.py|" in by_delta
    assert "./becomes-link.txt|symbolic link|777|edit.txt" in by_delta
    assert "./tool.sh|regular file|755|" in by_delta
    forget_everything(project, engine)
    assert "image: full copy (no previous source image)" in run(project, engine)
    assert image_tag(project) == tag  # the content hash of the inputs, however it was built
    assert listing(engine, tag) == by_delta


def test_an_unchanged_stage_with_new_setup_reuses_the_source_stage(project: Project) -> None:
    project.write_spec(SPEC)
    write_tree(project.root)
    run(project, "docker")
    project.write_spec(SPEC.replace("sort > /setup-saw.txt", "sort -r > /setup-saw.txt"))
    assert "already built; running setup on it" in run(project, "docker")
    # The image records its own inputs (the new setup), not the reused stage's: `image load`
    # compares them with the plan and would refuse an archive of it otherwise.
    archive = project.root.parent / f"{project.name}.tar.gz"
    saved = project.run("image", "save", "-f", "ci.yaml", "--engine", "docker", "-o", str(archive))
    assert saved.exit_code == 0, saved.output
    loaded = project.run("image", "load", "-f", "ci.yaml", "--engine", "docker", str(archive))
    archive.unlink()
    assert loaded.exit_code == 0, loaded.output


def test_a_long_chain_and_a_large_delta_go_back_to_a_full_copy(project: Project) -> None:
    project.write_spec(SPEC)
    write_tree(project.root)
    run(project, "docker")
    (project.root / "edit.txt").write_text("one\n")
    assert "image: delta of 1 changed, 0 removed file(s)" in run(project, "docker")
    # The newest stage as if it were the 8th delta in a row.
    index = project.root / ".parapipe" / "sources" / "docker" / "index.json"
    records = json.loads(index.read_text())
    records[0]["chain"] = 8
    index.write_text(json.dumps(records))
    (project.root / "edit.txt").write_text("two\n")
    assert "image: full copy (8 deltas in a row)" in run(project, "docker")
    (project.root / "big.bin").write_bytes(b"\1" * 200_000)
    assert "image: full copy (the delta of 0.2 MB is more than 25% of the source's" in run(
        project, "docker"
    )
    (project.root / "edit.txt").write_text("three\n")
    assert "image: delta of 1 changed" in run(project, "docker")
