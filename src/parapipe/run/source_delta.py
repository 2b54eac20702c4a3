"""A one-file edit costs about the size of the edit: the pre-setup source stage is built on the
previous one of this pipeline (a layer with only the changed files, deleting removed ones), and
`setup` runs on top, so it sees exactly the new source.

The pipeline image is the same as a clean build would make (files, modes, symlinks), so its tag
stays the content hash of its inputs. A full copy is made instead when no earlier source stage
with the same base, env, CA and prepare exists, when the chain of deltas gets long (every delta
is a layer more to read), or when the delta is a large part of the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Final

from parapipe.engine.api import Engine, LineSink
from parapipe.model import ImagePlan, SourceDelta
from parapipe.run.image_plan import SourceManifest
from parapipe.run.state.source_images import Fingerprint, SourceImages, SourceRecord

MAX_CHAIN: Final = 8
MAX_DELTA_SHARE: Final = 0.25  # of the source's bytes
# The paths to delete go on one RUN line of the Dockerfile: past this, a full copy is simpler.
MAX_REMOVED_CHARS: Final = 32_000
LOOKED_AT: Final = 3  # remembered source stages asked of the engine before giving up


async def build_image(
    engine: Engine, plan: ImagePlan, manifest: SourceManifest, state_dir: Path, log: LineSink
) -> str:
    """Build `plan` on `engine`, as a delta on the previous source stage where that pays; say
    which path was taken in `log`, and remember the new source stage. The image's id."""
    if not engine.source_stages:
        return await engine.build_image(replace(plan, source_tag=""), log)
    store = SourceImages(state_dir, engine.name)
    chain = 0
    if await engine.find_image(plan.source_tag) is not None:
        log(f"image: source stage {plan.source_tag} already built; running setup on it")
        chain = next((r.chain for r in store.records() if r.tag == plan.source_tag), 0)
    else:
        delta, chain, reason = await _choose(engine, plan, manifest, store)
        if delta is None:
            log(f"image: full copy ({reason})")
        else:
            shown = len(set(delta.removed) - set(delta.changed))
            log(
                f"image: delta of {len(delta.changed)} changed, {shown} removed file(s)"
                f" on {delta.previous}"
            )
            plan = replace(plan, delta=delta)
    # Remembered before building: when `setup` fails after the source stage was built, the
    # next attempt finds the stage with its chain length. A stage that was never built is
    # passed over, as the engine is asked whether it exists.
    try:
        store.remember(SourceRecord(plan.source_tag, manifest.stage, chain), manifest.files)
    except OSError as exc:  # only the next edit is slower
        log(f"parapipe: cannot remember the source stage: {exc.strerror or exc}")
    return await engine.build_image(plan, log)


async def _choose(
    engine: Engine, plan: ImagePlan, manifest: SourceManifest, store: SourceImages
) -> tuple[SourceDelta | None, int, str]:
    """The delta to build (or None), the new stage's chain length, and why not a delta."""
    candidates = [r for r in store.records() if r.stage == manifest.stage][:LOOKED_AT]
    for record in candidates:
        if await engine.find_image(record.tag) is None:
            continue
        if record.chain >= MAX_CHAIN:
            return None, 0, f"{record.chain} deltas in a row"
        previous = store.files(record)
        if previous is None:
            continue
        delta, reason = compute_delta(record.tag, previous, manifest)
        return delta, (record.chain + 1 if delta else 0), reason
    return None, 0, "no previous source image"


def compute_delta(
    previous_tag: str, previous: Mapping[str, Fingerprint], manifest: SourceManifest
) -> tuple[SourceDelta | None, str]:
    """The delta from `previous` to `manifest`'s files, or None and why a full copy is better.

    A path whose kind changed (file, executable, symlink) is deleted before the copy, so the
    copy never writes through or onto what was there. Folders that only removed files held go
    too: a clean build, which copies files, would not have them.
    """
    files = manifest.files
    changed = tuple(path for path, new in files.items() if previous.get(path) != new)
    retyped = [path for path in changed if path in previous and previous[path][0] != files[path][0]]
    removed = tuple(sorted([path for path in previous if path not in files] + retyped))
    changed_bytes = sum(files[path][2] for path in changed)
    total = manifest.total_bytes
    if total and changed_bytes > MAX_DELTA_SHARE * total:
        return None, (
            f"the delta of {_megabytes(changed_bytes)} is more than"
            f" {MAX_DELTA_SHARE:.0%} of the source's {_megabytes(total)}"
        )
    if sum(len(path) + 3 for path in removed) > MAX_REMOVED_CHARS:
        return None, f"{len(removed)} files to delete"
    kept_folders = {folder for path in files for folder in _folders(path)}
    emptied = {folder for path in removed for folder in _folders(path)} - kept_folders
    ordered = tuple(sorted(emptied, key=lambda folder: (-folder.count("/"), folder)))
    return SourceDelta(previous=previous_tag, changed=changed, removed=removed, emptied=ordered), ""


def _folders(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: depth + 1]) for depth in range(len(parts))]


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
