"""The step cache: a passed step's log and outputs, kept under a key of everything it depended
on, so an identical step later is restored instead of run.

Layout: `.parapipe/cache/steps/<key>/{meta.json, log.txt, outputs/}`. An entry is built in a
temporary folder beside the store and renamed into place, so a reader never sees half an entry
and two runs writing the same key at once leave one whole entry (the loser's rename fails and its
copy is thrown away).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from parapipe.model import ImagePlan, Step

KEY_VERSION = 1
_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    key: str
    path: Path
    step: str
    duration: float

    @property
    def log(self) -> Path:
        return self.path / "log.txt"

    @property
    def outputs(self) -> Path:
        return self.path / "outputs"


class StepCache:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "cache" / "steps"

    def find(self, key: str) -> CacheEntry | None:
        path = self.root / key
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        os.utime(path / "meta.json")  # the entry was used: prune keeps recently used ones
        return CacheEntry(
            key=key, path=path, step=str(meta["step"]), duration=float(meta["duration"])
        )

    def has(self, key: str) -> bool:
        """Whether an entry is stored under `key`, without marking it used (a forecast asks)."""
        return (self.root / key / "meta.json").is_file()

    def latest(self, pipeline: str, step: str) -> CacheEntry | None:
        try:
            key = (self._latest_file(pipeline, step)).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return self.find(key)

    def _latest_file(self, pipeline: str, step: str) -> Path:
        return self.root.parent / "latest" / pipeline / step

    def store(
        self,
        key: str,
        pipeline: str,
        step: str,
        duration: float,
        log: Path,
        outputs: Path | None,
    ) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=self.root, prefix=".building-"))
        try:
            shutil.copyfile(log, building / "log.txt")
            if outputs is not None and outputs.exists():
                shutil.copytree(outputs, building / "outputs", symlinks=True)
            meta = {"step": step, "duration": duration, "created": time.time()}
            (building / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            # Fails when another run stored the same key first; its entry is as good as ours.
            with contextlib.suppress(OSError):
                os.rename(building, self.root / key)
        finally:
            shutil.rmtree(building, ignore_errors=True)
        latest = self._latest_file(pipeline, step)
        latest.parent.mkdir(parents=True, exist_ok=True)
        pointer = latest.with_name(f".{step}.{os.getpid()}.tmp")
        pointer.write_text(key, encoding="utf-8")
        os.replace(pointer, latest)

    def prune(self, max_bytes: int) -> tuple[int, int]:
        """Remove the least recently used entries until the store holds at most `max_bytes`.
        Returns how many entries and bytes were removed."""
        if not self.root.exists():
            return 0, 0
        entries = []
        for path in self.root.iterdir():
            if path.name.startswith(".building-"):
                # Left by a run that was killed; one being built now is younger than an hour.
                if time.time() - path.stat().st_mtime > 3600:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            meta = path / "meta.json"
            used = meta.stat().st_mtime if meta.exists() else 0.0
            entries.append((used, _size(path), path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        removed = freed = 0
        for _, size, path in entries:
            if total <= max_bytes:
                break
            shutil.rmtree(path, ignore_errors=True)
            total -= size
            removed += 1
            freed += size
        return removed, freed


def step_key(
    *,
    step: Step,
    plan: ImagePlan,
    workdir: str,
    secret_fingerprints: Mapping[str, str],
    received: Mapping[str, Path],
    services: Sequence[object] = (),
) -> str:
    """Everything the step's result depends on. With `inputs`, the image counts without the
    content of the source files, plus the content of the files the globs match."""
    from parapipe.globs import matching

    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        for part in parts:
            text = json.dumps(part, sort_keys=True) if not isinstance(part, str) else part
            digest.update(f"{len(text)}:".encode())
            digest.update(text.encode())

    add(f"parapipe-step-cache-{KEY_VERSION}", step.name, list(step.run), dict(step.env), workdir)
    add(list(step.outputs), sorted(secret_fingerprints.items()))
    if step.inputs is None:
        add("image", plan.tag)
    else:
        add("image-without-source", image_environment(plan))
        for relative in matching(step.inputs, plan.files):
            add(relative, file_digest(plan.source / relative))
    for need, folder in sorted(received.items()):
        add("received", need, tree_digest(folder))
    if services:  # only then: the keys of steps without services stay as they were
        add("services", list(services))
    return digest.hexdigest()


def image_environment(plan: ImagePlan) -> str:
    """What makes the image apart from the source files: base, setup, env, workdir, CA."""
    parts = {
        "base": plan.base_id,
        "setup": list(plan.setup),
        "env": dict(plan.env),
        "workdir": plan.workdir,
        "ca": file_digest(plan.ca_bundle) if plan.ca_bundle else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def file_digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return ("x:" if os.access(path, os.X_OK) else "") + digest.hexdigest()


def tree_digest(folder: Path) -> str:
    """The content of a folder of outputs: every path, executable bit, content or link target."""
    digest = hashlib.sha256()
    if folder.exists():
        for path in sorted(_walk(folder)):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(file_digest(path).encode() + b"\0")
    return digest.hexdigest()


def _walk(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        for name in files:
            yield base / name
        for name in dirs:
            if (base / name).is_symlink():
                yield base / name


def _size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*"))


def parse_size(text: str) -> int:
    """`500M`, `2G`, `1.5G`, `800K` or plain bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
