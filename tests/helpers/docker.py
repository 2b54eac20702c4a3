"""The Docker daemon the integration tests use: whether it answers, and what a test leaves in it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from parapipe.model import LABEL_PIPELINE

BUSYBOX = "busybox:latest"  # seeded by scripts/seed-images: no test pulls it


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def image_present(ref: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False)
    return probe.returncode == 0


def containers_labelled(run_id: str) -> list[str]:
    """The containers of run `run_id`, running or not: a finished run must leave none."""
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.parapipe.run={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def remove_pipeline_images(pipeline: str, engine: str = "docker") -> None:
    """Images are the product of a run and are meant to be reused; the tests' own are not.

    A build whose setup fails leaves the image of its last good step behind, untagged but
    labelled with the pipeline, and the legacy builder's intermediate images carry the label
    too: every image labelled with the test's own pipeline goes, its source stages
    (`parapipe-source/<name>`) and prepare stages (`parapipe-prepare/<name>`) included."""
    if shutil.which(engine) is None:
        return
    tagged = _image_ids(engine, "ls", "-q", f"parapipe/{pipeline}")
    labelled = _image_ids(engine, "ls", "-aq", "--filter", f"label={LABEL_PIPELINE}={pipeline}")
    ids = sorted(set(tagged + labelled))
    # A source stage is the tagged parent of the pipeline image (and of the next source stage):
    # it can only go once its children went, so what could not go is tried again.
    # A container being removed meanwhile (a pooled one, a service) can hold one a moment.
    for _ in range(12):  # a chain of deltas is at most 9 deep
        if not ids:
            break
        subprocess.run([engine, "image", "rm", "-f", *ids], capture_output=True, check=False)
        ids = [image_id for image_id in ids if _image_present(engine, image_id)]
        if ids:
            time.sleep(0.5)


def remove_cache_volumes(pipeline: str) -> None:
    """The pipeline's cache volumes (`caches`, and `image.caches` built without BuildKit)."""
    listed = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label={LABEL_PIPELINE}={pipeline}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if listed:
        subprocess.run(["docker", "volume", "rm", "-f", *listed], capture_output=True, check=False)


def remove_podman_images_of(pipelines: Iterable[str]) -> None:
    """`remove_pipeline_images` on Podman, for those of `pipelines` that have images there."""
    listed = subprocess.run(
        ["podman", "image", "ls", "--format", "{{.Repository}}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    present = {repository.rpartition("/")[2] for repository in listed}
    for pipeline in sorted(set(pipelines) & present):
        remove_pipeline_images(pipeline, "podman")


def _image_present(engine: str, ref: str) -> bool:
    probe = subprocess.run([engine, "image", "inspect", ref], capture_output=True, check=False)
    return probe.returncode == 0


def _image_ids(engine: str, *ls: str) -> list[str]:
    listed = subprocess.run([engine, "image", *ls], capture_output=True, text=True, check=False)
    return listed.stdout.split()


def prune_cache_mounts(marker: str) -> None:
    """Remove BuildKit's `RUN --mount=type=cache` caches whose description (the command that
    first used them) holds `marker`: `image.caches` on Docker live in BuildKit's build cache,
    not in volumes. Debian's client prunes it (the docker 28 client needs buildx to)."""
    if not Path("/usr/bin/docker").exists():
        return
    listed = subprocess.run(
        ["docker", "system", "df", "-v", "--format", "{{json .BuildCache}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        return
    ids = [
        entry["ID"]
        for entry in json.loads(listed.stdout or "[]") or []
        if entry.get("CacheType") == "exec.cachemount" and marker in entry.get("Description", "")
    ]
    for cache_id in ids:
        subprocess.run(
            ["/usr/bin/docker", "builder", "prune", "-f", "--filter", f"id={cache_id}"],
            capture_output=True,
            check=False,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )
