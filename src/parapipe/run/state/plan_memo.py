"""The last image plan of a pipeline, remembered by a signature of everything it read, so that an
unchanged re-run names its image without a digest per file.

The signature covers the spec's image section, the base image id, and the path and stat (size,
mtime, inode, mode; not the ctime, which the build context's hard links move: see `digests`) of
every source file and of the CA bundle. It is trusted only when every one of those files is
older than the memo itself, the rule `DigestCache` follows ("racy git"): a file written in the
same clock tick as the memo could change again without its stat moving. One file per pipeline
and source folder in `.parapipe/digests/`, written atomically; a memo that cannot be read is
none, and the plan is made in full.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from parapipe.run.state.atomic import write_text_atomically
from parapipe.run.state.digests import CACHE_FOLDER

FORMAT: Final = 1


@dataclass(frozen=True)
class RememberedPlan:
    """What a plan computes from the files' digests; the rest comes from the spec."""

    tag: str
    source_tag: str
    prepare_tag: str
    inputs: Mapping[str, str]
    prepare_files: tuple[str, ...]


def stat_entry(path: str, status: os.stat_result) -> tuple[str, int, int, int, int]:
    return (path, status.st_size, status.st_mtime_ns, status.st_ino, status.st_mode)


def signature(parts: object) -> str:
    """A digest of `parts`: tuples, strings and numbers, whose `repr` is stable."""
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogateescape")).hexdigest()


class PlanMemo:
    """The remembered plan of one pipeline on one source folder."""

    def __init__(self, state_dir: Path, pipeline: str, source: Path) -> None:
        key = hashlib.sha256(os.fsencode(f"{pipeline}\0{source.absolute()}")).hexdigest()[:16]
        self.path = state_dir / CACHE_FOLDER / f"plan-{key}.json"

    def recall(self, wanted: str, newest_mtime_ns: int) -> RememberedPlan | None:
        """The plan remembered under the signature `wanted`, when no file it covers (the newest
        written at `newest_mtime_ns`) is as new as the memo."""
        try:
            if newest_mtime_ns >= self.path.stat().st_mtime_ns:
                return None
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
            return None
        if loaded.get("signature") != wanted:
            return None
        return _plan_from(loaded.get("plan"))

    def remember(self, key: str, plan: RememberedPlan) -> None:
        """Keep `plan` under the signature `key`; an OSError only makes the next run slower."""
        text = json.dumps(
            {
                "format": FORMAT,
                "signature": key,
                "plan": {
                    "tag": plan.tag,
                    "source_tag": plan.source_tag,
                    "prepare_tag": plan.prepare_tag,
                    "inputs": dict(plan.inputs),
                    "prepare_files": list(plan.prepare_files),
                },
            },
            separators=(",", ":"),
        )
        try:
            write_text_atomically(self.path, text)
        except OSError:
            return


def _plan_from(value: object) -> RememberedPlan | None:
    if not isinstance(value, dict):
        return None
    tag, source_tag, prepare_tag = (value.get(key) for key in ("tag", "source_tag", "prepare_tag"))
    inputs, prepare_files = value.get("inputs"), value.get("prepare_files")
    if not all(isinstance(part, str) for part in (tag, source_tag, prepare_tag)):
        return None
    if not isinstance(inputs, dict) or not all(
        isinstance(name, str) and isinstance(digest, str) for name, digest in inputs.items()
    ):
        return None
    if not isinstance(prepare_files, list) or not all(isinstance(p, str) for p in prepare_files):
        return None
    return RememberedPlan(str(tag), str(source_tag), str(prepare_tag), inputs, tuple(prepare_files))
