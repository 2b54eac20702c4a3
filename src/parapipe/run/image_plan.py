"""What goes into the pipeline image, and the content hash that names it.

An unchanged re-run must build nothing, so everything the image is made of (base, files, env,
setup commands, the host CA bundle) feeds one sha256, and the image is tagged with it.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from parapipe import globs
from parapipe.errors import ImageBuildFailed, SpecError
from parapipe.model import (
    CA_BUNDLE_PATH,
    CA_ENV_VARS,
    LABEL_PIPELINE,
    ImagePlan,
    ImageSpec,
    Pipeline,
)
from parapipe.run import image_inputs
from parapipe.run.source_files import select_source_files
from parapipe.run.state.digests import DigestCache
from parapipe.run.state.plan_memo import PlanMemo, RememberedPlan, signature, stat_entry

# Bump when the way an image is made from the same inputs changes, so old tags stop matching.
IMAGE_FORMAT: Final = "parapipe-image-v2"

TAG_REPOSITORY: Final = "parapipe"
SOURCE_REPOSITORY: Final = "parapipe-source"  # the pre-setup stage, kept for the next delta
PREPARE_REPOSITORY: Final = "parapipe-prepare"  # the stage up to `prepare`, where committed
HASH_LENGTH: Final = 20
SYSTEM_CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")


def host_ca_bundle() -> Path | None:
    """The CA bundle this host trusts: `SSL_CERT_FILE`, else the system's, else None."""
    configured = os.environ.get("SSL_CERT_FILE")
    if configured and Path(configured).is_file():
        return Path(configured)
    defaults = ssl.get_default_verify_paths()
    for candidate in (defaults.cafile, defaults.openssl_cafile, SYSTEM_CA_BUNDLE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass(frozen=True)
class SourceManifest:
    """What the source stage of a plan holds: `stage` hashes everything under the source (base,
    env, CA, prepare), `files` maps each path to its kind, digest and size."""

    stage: str
    files: Mapping[str, tuple[str, str, int]]

    @property
    def total_bytes(self) -> int:
        return sum(size for _, _, size in self.files.values())


def plan_image(pipeline: Pipeline, base_id: str) -> ImagePlan:
    """Select the files, hash everything the image is made of, and name the image after it.

    Blocking (it runs git and stats every file): call it from a worker thread.
    """
    return plan_image_and_source(pipeline, base_id)[0]


@dataclass(frozen=True)
class SourceListing:
    """The image's files with their `lstat`, and a signature of all a plan reads but the base:
    the spec's image section, the pipeline's name, and the stat of every file and the CA."""

    files: tuple[str, ...]
    stats: dict[str, os.stat_result]
    ca_bundle: Path | None
    signature: str
    newest_mtime_ns: int


def list_source(pipeline: Pipeline) -> SourceListing:
    """List and `lstat` the image's files (blocking; from a worker thread)."""
    spec = pipeline.image
    stats: dict[str, os.stat_result] = {}
    files = tuple(select_source_files(spec.source, spec.exclude, stats))
    entries = []
    for path in files:
        status = stats.get(path)
        if status is None:  # listed without git: not stat-ed yet
            try:
                status = stats[path] = os.lstat(f"{spec.source}/{path}")
            except OSError as exc:
                raise ImageBuildFailed(
                    f"cannot read {spec.source}/{path} for the image: {exc.strerror or exc}"
                ) from exc
        entries.append(stat_entry(path, status))
    ca_bundle = host_ca_bundle() if spec.host_ca else None
    ca_entry = stat_entry(str(ca_bundle), ca_bundle.stat()) if ca_bundle is not None else None
    newest = max((entry[2] for entry in entries), default=0)
    if ca_entry is not None:
        newest = max(newest, ca_entry[2])
    key = signature((IMAGE_FORMAT, pipeline.name, repr(spec), ca_entry, entries))
    return SourceListing(files, stats, ca_bundle, key, newest)


def list_source_soon(pipeline: Pipeline) -> Future[SourceListing]:
    """`list_source` in a thread of its own, started now. A run spends its first tenths of a
    second importing its modules and asking the engine; the listing, mostly git and one `lstat`
    per file, waits on the kernel meanwhile."""
    listing: Future[SourceListing] = Future()

    def work() -> None:
        try:
            listing.set_result(list_source(pipeline))
        except BaseException as exc:  # handed to whoever takes the result
            listing.set_exception(exc)

    threading.Thread(target=work, name="parapipe-listing", daemon=True).start()
    return listing


def remembered_plan(pipeline: Pipeline, base_id: str, listing: SourceListing) -> ImagePlan | None:
    """The plan of the last run, when nothing it read has changed since (no file is read, only
    stat-ed), else None. Blocking."""
    memo = PlanMemo(pipeline.state_dir, pipeline.name, pipeline.image.source)
    known = memo.recall(_memo_key(listing, base_id), listing.newest_mtime_ns)
    return None if known is None else _plan(pipeline, base_id, listing, known)


def _memo_key(listing: SourceListing, base_id: str) -> str:
    return signature((listing.signature, base_id))


def plan_image_and_source(
    pipeline: Pipeline, base_id: str, listing: SourceListing | None = None
) -> tuple[ImagePlan, SourceManifest]:
    """`plan_image`, with the manifest of its source stage (for a delta on the next edit).

    Two hashes: the source stage's (base, env, labels, prepare, CA, files), which tags the
    pre-setup image, and the image's, which adds the setup commands and tags the pipeline image.
    A file's digest is read again only when its stat changed (`DigestCache`). The result is
    remembered for `remembered_plan`.
    """
    spec = pipeline.image  # checked when the spec was loaded (`parapipe.spec.image_checks`)
    if listing is None:
        listing = list_source(pipeline)
    files, ca_bundle = listing.files, listing.ca_bundle
    env = _image_env(spec, ca_bundle)
    labels = {LABEL_PIPELINE: pipeline.name}
    digest = hashlib.sha256()
    _feed(digest, IMAGE_FORMAT, base_id, spec.workdir)
    _feed(digest, "env", *_flatten(sorted(env.items())))
    _feed(digest, "labels", *_flatten(sorted(labels.items())))
    digests = DigestCache(pipeline.state_dir, spec.source, listing.stats)
    prepare_files = _feed_prepare(digest, spec, files, digests)
    ca_digest = _file_digest(ca_bundle) if ca_bundle is not None else ""
    _feed(digest, "ca", ca_digest)
    stage = digest.hexdigest()
    _feed(digest, "files", str(len(files)))
    fingerprints: dict[str, tuple[str, str, int]] = {}
    parts: list[str] = []
    for path in files:
        fingerprint = _fingerprint(spec.source, path, digests)
        fingerprints[path] = fingerprint
        parts += (path, fingerprint[0], fingerprint[1])
    _feed(digest, *parts)
    digests.save()
    source_hash = digest.hexdigest()
    _feed(digest, "setup", str(len(spec.setup)), *spec.setup)
    inputs = image_inputs.input_digests(
        spec,
        image_format=IMAGE_FORMAT,
        base_id=base_id,
        pipeline=pipeline.name,
        env=env,
        prepare_files=prepare_files,
        ca_digest=ca_digest,
        fingerprints={path: fingerprint[:2] for path, fingerprint in fingerprints.items()},
    )
    known = RememberedPlan(
        tag=image_tag(pipeline.name, digest.hexdigest()),
        source_tag=image_tag(pipeline.name, source_hash, SOURCE_REPOSITORY),
        # The prepare stage of a build without BuildKit (engine.docker.commit_build), named by
        # what goes into it: base, env, labels, CA and prepare.
        prepare_tag=image_tag(pipeline.name, stage, PREPARE_REPOSITORY) if spec.prepare else "",
        inputs=inputs,
        prepare_files=prepare_files,
    )
    memo = PlanMemo(pipeline.state_dir, pipeline.name, spec.source)
    memo.remember(_memo_key(listing, base_id), known)
    return _plan(pipeline, base_id, listing, known), SourceManifest(stage, fingerprints)


def _image_env(spec: ImageSpec, ca_bundle: Path | None) -> dict[str, str]:
    if ca_bundle is None:
        return dict(spec.env)
    return {name: CA_BUNDLE_PATH for name in CA_ENV_VARS} | dict(spec.env)


def _plan(
    pipeline: Pipeline, base_id: str, listing: SourceListing, known: RememberedPlan
) -> ImagePlan:
    spec = pipeline.image
    return ImagePlan(
        tag=known.tag,
        base_id=base_id,
        source=spec.source,
        files=listing.files,
        workdir=spec.workdir,
        env=_image_env(spec, listing.ca_bundle),
        setup=spec.setup,
        ca_bundle=listing.ca_bundle,
        labels={LABEL_PIPELINE: pipeline.name},
        prepare_files=known.prepare_files,
        prepare=spec.prepare.run if spec.prepare else (),
        prepare_env=dict(spec.prepare.env) if spec.prepare else {},
        caches=dict(spec.caches),
        inputs=known.inputs,
        source_tag=known.source_tag,
        prepare_tag=known.prepare_tag,
    )


def _feed_prepare(
    digest: hashlib._Hash, spec: ImageSpec, files: Sequence[str], digests: DigestCache
) -> tuple[str, ...]:
    """Feed `image.prepare` and `image.caches` to `digest`; return the files prepare gets.

    Nothing is fed without them, so the tags of images without `prepare` stay as they were.
    A glob that matches none of the image's files is a spec error at that glob: a typo there
    would otherwise quietly leave the dependencies out of the layer.
    """
    prepare = spec.prepare
    if prepare is None and not spec.caches:
        return ()
    _feed(digest, "caches", *_flatten(sorted(spec.caches.items())))
    if prepare is None:
        return ()
    try:
        check_prepare_globs(spec, files)
    except SpecError as exc:  # a file went between the spec check and now
        raise ImageBuildFailed(str(exc)) from exc
    matched = tuple(globs.matching(prepare.files, files))
    _feed(digest, "prepare", str(len(prepare.run)), *prepare.run)
    _feed(digest, "prepare-env", *_flatten(sorted(prepare.env.items())))
    _feed(digest, "prepare-files", str(len(matched)))
    for path in matched:
        _feed(digest, path, *_fingerprint(spec.source, path, digests)[:2])
    return matched


def check_prepare_files(pipeline: Pipeline) -> None:
    """Raise a located `SpecError` for a `image.prepare.files` glob that matches no file of the
    image. Blocking (it lists the source); a usage error, so it is raised before any engine."""
    spec = pipeline.image
    if spec.prepare is not None:
        check_prepare_globs(spec, select_source_files(spec.source, spec.exclude))


def check_prepare_globs(spec: ImageSpec, files: Sequence[str]) -> None:
    if spec.prepare is None:
        return
    for glob, location in zip(spec.prepare.files, spec.prepare.file_locations, strict=True):
        if not glob.startswith("!") and not globs.matching([glob], files):
            raise SpecError(
                f"'image.prepare.files' glob {glob!r} matches no file of the image source"
                f" {spec.source} (git-ignored and excluded files are not part of it)",
                location,
            )


def image_tag(pipeline_name: str, content_hash: str, repository: str = TAG_REPOSITORY) -> str:
    return f"{repository}/{repository_name(pipeline_name)}:{content_hash[:HASH_LENGTH]}"


def repository_name(pipeline_name: str) -> str:
    """`pipeline_name` as a docker repository path component: `[a-z0-9]+([._-][a-z0-9]+)*`."""
    name = re.sub(r"[^a-z0-9._-]+", "-", pipeline_name.lower())
    name = re.sub(r"[._-]{2,}", "-", name)
    name = name[:64].strip("._-")
    return name or "pipeline"


def _fingerprint(source: Path, path: str, digests: DigestCache) -> tuple[str, str, int]:
    """The kind of the file, a digest of what the image gets from it (a regular file's from
    `digests` while its stat is unchanged) and its size."""
    full = f"{source}/{path}"  # not os.path.join: once per file of a large tree
    try:
        status = digests.lstat(full, path)
        if stat.S_ISLNK(status.st_mode):
            return "symlink", os.readlink(full), status.st_size
        kind = "executable" if status.st_mode & 0o111 else "file"
        return kind, digests.digest(full, path, status), status.st_size
    except OSError as exc:
        raise ImageBuildFailed(f"cannot read {full} for the image: {exc.strerror or exc}") from exc


def _file_digest(path: Path) -> str:
    try:
        with path.open("rb") as content:
            # Reads in chunks: a large file is never held in memory whole.
            return hashlib.file_digest(content, "sha256").hexdigest()
    except OSError as exc:
        raise ImageBuildFailed(f"cannot read {path} for the image: {exc.strerror or exc}") from exc


def _flatten(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return [part for pair in pairs for part in pair]


def _feed(digest: hashlib._Hash, *parts: str) -> None:
    """Add `parts` to `digest`, each prefixed with its length so no two sequences collide."""
    digest.update(image_inputs.length_prefixed(parts))
