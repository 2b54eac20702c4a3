"""The pipeline image outside a run: its content tag, built once, written to an archive, and
loaded from one on another machine only when it is the image this spec plans there.

`export github --split` builds the image in one job and hands it to every step job as an
archive. A step job must never run on another image than the one its checkout plans: `load`
plans the image here (with the base the archive brought), and refuses an archive whose image
has another tag, naming the inputs that differ and removing what it loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio.to_thread

from parapipe.engine.api import Engine, LineSink
from parapipe.errors import UsageError
from parapipe.model import LABEL_INPUTS, LABEL_PIPELINE, ImagePlan, Pipeline
from parapipe.run import image_inputs
from parapipe.run.image_plan import plan_image


@dataclass(frozen=True, kw_only=True)
class ReadyImage:
    plan: ImagePlan
    image_id: str
    built: bool  # False: it was there already


async def plan_here(engine: Engine, pipeline: Pipeline, log: LineSink) -> ImagePlan:
    """The image the spec plans on this machine. The base is resolved as `parapipe run` does
    (found locally, else pulled; `image.build`: built from its Dockerfile), as its id is one of
    the inputs; the pipeline image itself is never built."""
    base_id = await engine.resolve_base(pipeline.image, log)
    return await anyio.to_thread.run_sync(plan_image, pipeline, base_id)


async def ensure_image(engine: Engine, pipeline: Pipeline, log: LineSink) -> ReadyImage:
    """The pipeline image as `parapipe run` would use it: the one tagged with its content hash,
    else built now."""
    plan = await plan_here(engine, pipeline, log)
    found = await engine.find_image(plan.tag)
    if found is not None:
        return ReadyImage(plan=plan, image_id=found, built=False)
    return ReadyImage(plan=plan, image_id=await engine.build_image(plan, log), built=True)


def saved_references(pipeline: Pipeline, plan: ImagePlan) -> list[str]:
    """What goes into the archive: the pipeline image and, by its tag, the base. The base's
    layers are the image's own, so it costs nothing, and a machine that loads the archive can
    then plan the same tag without pulling it. (A base built from `image.build` has no tag.)"""
    origin = pipeline.image.origin
    return [plan.tag, *([origin] if isinstance(origin, str) else [])]


async def save(
    engine: Engine, pipeline: Pipeline, destination: IO[bytes], log: LineSink
) -> ReadyImage:
    """Write the pipeline image (built first when it is not there) and its base to
    `destination`."""
    ready = await ensure_image(engine, pipeline, log)
    await engine.save_images(saved_references(pipeline, ready.plan), destination)
    return ready


async def load(engine: Engine, pipeline: Pipeline, archive: Path, log: LineSink) -> ReadyImage:
    """Load `archive` and check that it holds the image this spec plans here. Raises
    `UsageError` (exit 2) when it does not, naming the inputs that differ, after removing what it
    loaded: no run may find the wrong image."""
    origin = pipeline.image.origin
    base_ref = origin if isinstance(origin, str) else None
    base_before = await engine.find_image(base_ref) if base_ref is not None else None
    loaded = await engine.load_images(archive)
    try:
        plan = await plan_here(engine, pipeline, log)
        image_id = await engine.find_image(plan.tag)
        if image_id is not None and _short(plan.tag) in {_short(ref) for ref in loaded}:
            problem = await _forged(engine, plan, archive)
            if problem is None:
                if base_ref is not None and base_before is not None:
                    now = await engine.find_image(base_ref)
                    if now != base_before:
                        log(
                            f"parapipe: {base_ref} now names the archive's base (was {base_before})"
                        )
                return ReadyImage(plan=plan, image_id=image_id, built=False)
        else:
            problem = await _mismatch(engine, pipeline, plan, loaded, archive)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _unload(engine, loaded, base_ref, base_before)
        raise
    with anyio.CancelScope(shield=True):
        await _unload(engine, loaded, base_ref, base_before)
    raise UsageError(problem + "; removed what it loaded")


async def _forged(engine: Engine, plan: ImagePlan, archive: Path) -> str | None:
    """Why the image under the planned tag is not what the tag stands for, if it is not: its
    recorded inputs must be the planned ones (a check against mistakes, not a signature)."""
    found = image_inputs.decode((await engine.image_labels(plan.tag)).get(LABEL_INPUTS))
    if found == dict(plan.inputs):
        return None
    differ = image_inputs.differing(plan.inputs, found)
    return f"{archive} holds {plan.tag}, but made from other inputs: {'; '.join(differ)}"


async def _mismatch(
    engine: Engine, pipeline: Pipeline, plan: ImagePlan, loaded: Sequence[str], archive: Path
) -> str:
    spec = pipeline.spec_path
    held = [ref for ref in loaded if _is_pipeline_image(ref, plan)]
    if not held:
        names = ", ".join(loaded)
        return f"{archive} holds no image of pipeline {pipeline.name!r} ({names}), not {plan.tag}"
    labels = await engine.image_labels(held[0])
    if labels.get(LABEL_PIPELINE) != pipeline.name:
        return f"{archive} holds {held[0]}, which is not an image of pipeline {pipeline.name!r}"
    found = image_inputs.decode(labels.get(LABEL_INPUTS))
    differ = image_inputs.differing(plan.inputs, found) or ["inputs that are not recorded"]
    return (
        f"{archive} holds {_short(held[0])}, but {spec} plans {plan.tag} here;"
        f" what differs: {'; '.join(differ)}"
    )


async def _unload(
    engine: Engine, loaded: Sequence[str], base_ref: str | None, base_before: str | None
) -> None:
    """Remove what the archive brought, the pipeline image before its base; a base tag that was
    here before points again where it did."""
    base = _short(base_ref) if base_ref is not None else None
    await engine.untag_images([ref for ref in loaded if _short(ref) != base])
    if base_ref is None or base not in {_short(ref) for ref in loaded}:
        return
    if base_before is None:
        await engine.untag_images([base_ref])
    elif await engine.find_image(base_ref) != base_before:
        # The archive moved a tag that was here: its base goes, the tag points back.
        await engine.untag_images([base_ref])
        await engine.tag_image(base_before, base_ref)


def _is_pipeline_image(reference: str, plan: ImagePlan) -> bool:
    repository = plan.tag.rsplit(":", 1)[0]
    return _short(reference).rsplit(":", 1)[0] == repository


def _short(reference: str) -> str:
    """`reference` without the registry Podman puts before short names."""
    for prefix in ("docker.io/library/", "docker.io/", "localhost/"):
        if reference.startswith(prefix):
            return reference[len(prefix) :]
    return reference
