"""Old pipeline images removed: every edit builds a new `parapipe/<name>:<hash>`, so after a
build only the newest few stay, plus any that a container still uses.

Only images labelled `io.parapipe.pipeline=<name>` are ever looked at. A tagged one is removed by
its tag, so the engine also deletes the untagged parent layers that only it held (the legacy
builder's intermediate images) and leaves an image that someone tagged again. An untagged
top-level one is what a failed build leaves (the legacy builder keeps the last step that
passed): it speeds up the next attempt, so it stays until a build succeeds, which makes it stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from parapipe.engine import process
from parapipe.engine.api import RemovedImages
from parapipe.engine.docker.argv import normalized_image_id
from parapipe.model import LABEL_PIPELINE

QUERY_TIMEOUT: Final = 60.0
REMOVE_TIMEOUT: Final = 300.0  # deleting the layers of large images on a busy disk
UNTAGGED: Final = "<none>:<none>"


@dataclass(frozen=True)
class ListedImage:
    image_id: str
    reference: str  # repository:tag, or UNTAGGED


def list_images_argv(binary: str, pipeline: str) -> list[str]:
    """The pipeline's top-level images (tagged, and untagged ones without children), newest
    first, one `ID<TAB>REPOSITORY:TAG` a line. Both engines sort by creation, newest first."""
    return [
        binary,
        "images",
        "--no-trunc",
        "--filter",
        f"label={LABEL_PIPELINE}={pipeline}",
        "--format",
        "{{.ID}}\t{{.Repository}}:{{.Tag}}",
    ]


def list_containers_argv(binary: str) -> list[str]:
    return [binary, "ps", "-aq", "--no-trunc"]


def container_images_argv(binary: str, containers: Iterable[str]) -> list[str]:
    return [binary, "container", "inspect", "--format", "{{.Image}}", *containers]


def remove_images_argv(binary: str, references: Iterable[str]) -> list[str]:
    return [binary, "rmi", *references]


def parse_images(listing: str) -> list[ListedImage]:
    images = []
    for line in listing.splitlines():
        image_id, _, reference = line.strip().partition("\t")
        if image_id:
            images.append(ListedImage(normalized_image_id(image_id), reference or UNTAGGED))
    return images


def images_to_remove(
    images: Sequence[ListedImage], *, keep: int, keep_ids: frozenset[str], in_use: frozenset[str]
) -> list[str]:
    """The references to remove from `images` (newest first): tags of the images beyond the
    newest `keep` of each repository (pipeline images, their source stages, which the next
    edit's delta builds on, and their committed prepare stages), those in `keep_ids` first among
    them, and ids of the untagged ones, but none that a container uses."""
    by_repository: dict[str, list[str]] = {}
    for image in images:
        if image.reference != UNTAGGED:
            tagged_ids = by_repository.setdefault(_repository(image.reference), [])
            if image.image_id not in tagged_ids:
                tagged_ids.append(image.image_id)
    kept_references: set[str] = set()
    for repository, tagged_ids in by_repository.items():
        kept = [image_id for image_id in tagged_ids if image_id in keep_ids]
        for image_id in tagged_ids:
            if len(kept) >= keep:
                break
            if image_id not in kept:
                kept.append(image_id)
        kept_references |= {
            image.reference
            for image in images
            if image.image_id in kept and _repository(image.reference) == repository
        }
    doomed = []
    for image in images:
        if image.image_id in in_use or image.reference in kept_references:
            continue
        if image.reference == UNTAGGED:
            if any(other.image_id == image.image_id for other in images if other is not image):
                continue  # an id listed untagged and tagged is one image: the tag decides
            doomed.append(image.image_id)
        else:
            doomed.append(image.reference)
    return list(dict.fromkeys(doomed))


def _repository(reference: str) -> str:
    """`parapipe/name` of `parapipe/name:tag` (Podman adds `localhost/`: the same either way)."""
    return reference.rpartition(":")[0]


async def remove_old_images(
    program: process.Program, pipeline: str, *, keep: int, keep_ids: frozenset[str]
) -> RemovedImages:
    binary = program.binary
    listed = await process.query(program, list_images_argv(binary, pipeline), QUERY_TIMEOUT)
    if listed.code != 0:
        return RemovedImages(problem=f"cannot list the pipeline's images: {listed.problem}")
    images = parse_images(listed.out)
    if not images:
        return RemovedImages()
    in_use = await _images_in_use(program)
    if in_use is None:  # without knowing which images containers use, none goes
        return RemovedImages(problem="cannot list the containers, so no old image was removed")
    normalized_keep = frozenset(normalized_image_id(image_id) for image_id in keep_ids)
    doomed = images_to_remove(images, keep=keep, keep_ids=normalized_keep, in_use=in_use)
    if not doomed:
        return RemovedImages()
    removed = await process.query(program, remove_images_argv(binary, doomed), REMOVE_TIMEOUT)
    if removed.code == 0:
        return RemovedImages(removed=tuple(doomed))
    # `rmi` goes on past a reference it cannot remove (a container created meanwhile uses it):
    # what is gone went, and the rest is said once.
    again = await process.query(program, list_images_argv(binary, pipeline), QUERY_TIMEOUT)
    left = set()
    if again.code == 0:
        for image in parse_images(again.out):
            left |= {image.image_id, image.reference}
    gone = tuple(reference for reference in doomed if reference not in left)
    return RemovedImages(removed=gone, problem=f"cannot remove every old image: {removed.problem}")


async def _images_in_use(program: process.Program) -> frozenset[str] | None:
    """The images of every container there is, running or not (a stopped one can start again);
    None when the engine cannot list them."""
    listed = await process.query(program, list_containers_argv(program.binary), QUERY_TIMEOUT)
    if listed.code != 0:
        return None
    containers = listed.out.split()
    if not containers:
        return frozenset()
    # A container removed between the two commands makes `inspect` fail for it alone; the
    # others are still printed.
    inspected = await process.query(
        program, container_images_argv(program.binary, containers), QUERY_TIMEOUT
    )
    return frozenset(normalized_image_id(line) for line in inspected.out.split())
