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
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pathspec

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
from parapipe.run.state.digests import DigestCache

# Bump when the way an image is made from the same inputs changes, so old tags stop matching.
IMAGE_FORMAT: Final = "parapipe-image-v2"

TAG_REPOSITORY: Final = "parapipe"
SOURCE_REPOSITORY: Final = "parapipe-source"  # the pre-setup stage, kept for the next delta
PREPARE_REPOSITORY: Final = "parapipe-prepare"  # the stage up to `prepare`, where committed
HASH_LENGTH: Final = 20
SYSTEM_CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")

# Never part of the image, wherever they appear: git's own data and parapipe's run folders.
ALWAYS_EXCLUDED: Final = frozenset({".git", ".parapipe"})

# Git variables set by hooks (a pre-push hook runs us) would point `git ls-files` at another
# index or work tree; these are the ones that only configure git and are safe to keep.
_GIT_ENV_KEPT: Final = ("GIT_EXEC_PATH", "GIT_CONFIG_")


def select_source_files(
    source: Path, exclude: Sequence[str], stats: dict[str, os.stat_result] | None = None
) -> list[str]:
    """The files of `source` that go into the image: POSIX paths relative to it, sorted.

    Regular files and symlinks only. Git-ignored files are left out (by git itself inside a work
    tree, else by the `.gitignore` files found in the tree), then whatever matches `exclude`.
    The `lstat` of files git listed goes into `stats`, so that they are not asked twice.
    """
    candidates = _git_files(source, stats)
    if candidates is None:
        candidates = _walked_files(source)
    kept = (path for path in candidates if ALWAYS_EXCLUDED.isdisjoint(path.split("/")))
    if exclude:
        excluded = pathspec.GitIgnoreSpec.from_lines(exclude)
        kept = (path for path in kept if not excluded.match_file(path))
    return sorted(kept)


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


def plan_image_and_source(pipeline: Pipeline, base_id: str) -> tuple[ImagePlan, SourceManifest]:
    """`plan_image`, with the manifest of its source stage (for a delta on the next edit).

    Two hashes: the source stage's (base, env, labels, prepare, CA, files), which tags the
    pre-setup image, and the image's, which adds the setup commands and tags the pipeline image.
    A file's digest is read again only when its stat changed (`DigestCache`).
    """
    spec = pipeline.image  # checked when the spec was loaded (`parapipe.spec.image_checks`)
    stats: dict[str, os.stat_result] = {}
    files = tuple(select_source_files(spec.source, spec.exclude, stats))
    ca_bundle = host_ca_bundle() if spec.host_ca else None
    env = dict(spec.env)
    if ca_bundle is not None:
        env = {name: CA_BUNDLE_PATH for name in CA_ENV_VARS} | env
    labels = {LABEL_PIPELINE: pipeline.name}
    digest = hashlib.sha256()
    _feed(digest, IMAGE_FORMAT, base_id, spec.workdir)
    _feed(digest, "env", *_flatten(sorted(env.items())))
    _feed(digest, "labels", *_flatten(sorted(labels.items())))
    digests = DigestCache(pipeline.state_dir, spec.source, stats)
    prepare_files = _feed_prepare(digest, spec, files, digests)
    ca_digest = _file_digest(ca_bundle) if ca_bundle is not None else ""
    _feed(digest, "ca", ca_digest)
    stage = digest.hexdigest()
    _feed(digest, "files", str(len(files)))
    fingerprints: dict[str, tuple[str, str, int]] = {}
    for path in files:
        fingerprint = _fingerprint(spec.source, path, digests)
        fingerprints[path] = fingerprint
        _feed(digest, path, *fingerprint[:2])
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
    plan = ImagePlan(
        tag=image_tag(pipeline.name, digest.hexdigest()),
        base_id=base_id,
        source=spec.source,
        files=files,
        workdir=spec.workdir,
        env=env,
        setup=spec.setup,
        ca_bundle=ca_bundle,
        labels=labels,
        prepare_files=prepare_files,
        prepare=spec.prepare.run if spec.prepare else (),
        prepare_env=dict(spec.prepare.env) if spec.prepare else {},
        caches=dict(spec.caches),
        inputs=inputs,
        source_tag=image_tag(pipeline.name, source_hash, SOURCE_REPOSITORY),
        prepare_tag=image_tag(pipeline.name, stage, PREPARE_REPOSITORY) if spec.prepare else "",
    )
    return plan, SourceManifest(stage=stage, files=fingerprints)


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


def _git_files(source: Path, stats: dict[str, os.stat_result] | None = None) -> list[str] | None:
    """What git would add under `source` (tracked plus untracked-not-ignored), or None when
    `source` is not in a git work tree or git is missing."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("GIT_") or name.startswith(_GIT_ENV_KEPT)
    }
    try:
        listing = subprocess.run(
            [
                "git",
                "-C",
                str(source),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=False,
            env=env,
        )
    except OSError:
        return None
    if listing.returncode != 0:
        return None
    files: list[str] = []
    root = os.fspath(source)
    # A path shows up once per merge stage while a conflict is unresolved.
    for entry in sorted({os.fsdecode(raw) for raw in listing.stdout.split(b"\0") if raw}):
        path = entry.rstrip("/")
        try:
            # Plain strings, not Path: this runs once per file of a large tree.
            status = os.lstat(os.path.join(root, path))
        except FileNotFoundError:
            continue  # tracked, but deleted from the work tree
        mode = status.st_mode
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            files.append(path)
            if stats is not None:
                stats[path] = status
        elif stat.S_ISDIR(mode) and path.split("/")[-1] not in ALWAYS_EXCLUDED:
            # A submodule, or a nested repository git lists as one untracked folder: it has
            # its own ignore rules.
            folder = source / path
            nested = _git_files(folder) if (folder / ".git").exists() else None
            if nested is None:
                nested = _walked_files(folder)
            files.extend(f"{path}/{inner}" for inner in nested)
    return files


def _walked_files(source: Path) -> list[str]:
    """The files under `source` that `.gitignore` files do not ignore, read as git reads them:
    a deeper `.gitignore` overrides a shallower one, and an ignored folder is not entered.

    For when git cannot answer. The `.gitignore` files between the work tree's root (the
    folder holding `.git`, when there is one) and `source` apply too.
    """
    top = _work_tree_root(source) or source
    lead = source.relative_to(top).parts
    ignores: dict[str, pathspec.GitIgnoreSpec] = {}
    for depth in range(len(lead)):
        prefix = "".join(f"{part}/" for part in lead[:depth])
        _read_gitignore(top / prefix, prefix, ignores)
    lead_prefix = "".join(f"{part}/" for part in lead)
    files: list[str] = []
    for folder, dirnames, filenames in os.walk(source):
        relative = Path(folder).relative_to(source).as_posix()
        inner = "" if relative == "." else f"{relative}/"
        prefix = lead_prefix + inner
        _read_gitignore(Path(folder), prefix, ignores)
        entered = []
        for name in dirnames:
            if name in ALWAYS_EXCLUDED:
                continue
            if Path(folder, name).is_symlink():
                # A symlink to a folder: os.walk lists it with the folders but does not follow
                # it; in the image it stays a symlink.
                if not _ignored(ignores, prefix + name):
                    files.append(inner + name)
            elif not _ignored(ignores, prefix + name, folder=True):
                entered.append(name)
        dirnames[:] = entered
        for name in filenames:
            mode = Path(folder, name).lstat().st_mode
            if (stat.S_ISREG(mode) or stat.S_ISLNK(mode)) and not _ignored(ignores, prefix + name):
                files.append(inner + name)
    return files


def _work_tree_root(path: Path) -> Path | None:
    return next((folder for folder in (path, *path.parents) if (folder / ".git").exists()), None)


def _read_gitignore(folder: Path, prefix: str, ignores: dict[str, pathspec.GitIgnoreSpec]) -> None:
    gitignore = folder / ".gitignore"
    if gitignore.is_file():
        with gitignore.open(encoding="utf-8", errors="surrogateescape") as lines:
            ignores[prefix] = pathspec.GitIgnoreSpec.from_lines(lines)


def _ignored(
    ignores: dict[str, pathspec.GitIgnoreSpec], path: str, *, folder: bool = False
) -> bool:
    """Whether the `.gitignore` files in `ignores` (keyed by their folder's prefix) ignore `path`.
    The deepest file with a matching pattern decides, as in git."""
    parts = path.split("/")
    for depth in range(len(parts) - 1, -1, -1):
        prefix = "".join(f"{part}/" for part in parts[:depth])
        spec = ignores.get(prefix)
        if spec is None:
            continue
        relative = "/".join(parts[depth:]) + ("/" if folder else "")
        verdict = spec.check_file(relative).include
        if verdict is not None:
            return verdict
    return False


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
    for part in parts:
        data = part.encode("utf-8", "surrogateescape")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
