"""The source-stage images this project built, remembered per engine so the next edit can build
on the newest of them: `.parapipe/sources/<engine>/index.json` lists them newest first (tag,
stage hash, delta chain length), and `<hash>.json` beside it holds each one's file list
(path -> kind, digest, size), which a delta is computed against.

Only the newest `KEPT` are remembered; the images themselves go with `image.keep`. Whether a
remembered image still exists is asked of the engine, never assumed from these files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from parapipe.run.state.atomic import write_text_atomically

SOURCES_FOLDER: Final = "sources"
INDEX_FILE: Final = "index.json"
KEPT: Final = 8

Fingerprint = tuple[str, str, int]  # kind, digest, size


@dataclass(frozen=True)
class SourceRecord:
    tag: str  # parapipe-source/<pipeline>:<hash>
    stage: str  # hash of what lies under the files (base, env, CA, prepare): deltas need it equal
    chain: int  # deltas on top of the last full copy (0: this is a full copy)


class SourceImages:
    """The remembered source stages of one engine in one state folder."""

    def __init__(self, state_dir: Path, engine: str) -> None:
        self.folder = state_dir / SOURCES_FOLDER / engine

    def records(self) -> list[SourceRecord]:
        """Newest first; an unreadable index is an empty one."""
        try:
            loaded = json.loads((self.folder / INDEX_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        records = []
        for entry in loaded if isinstance(loaded, list) else []:
            try:
                records.append(
                    SourceRecord(str(entry["tag"]), str(entry["stage"]), int(entry["chain"]))
                )
            except (KeyError, TypeError, ValueError):
                continue
        return records

    def files(self, record: SourceRecord) -> dict[str, Fingerprint] | None:
        """The file list of `record`'s image, or None when it is not (or no longer) readable."""
        try:
            loaded = json.loads(self._manifest(record).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(loaded, dict):
            return None
        files: dict[str, Fingerprint] = {}
        for path, entry in loaded.items():
            if not (isinstance(entry, list) and len(entry) == 3):
                return None
            files[path] = (str(entry[0]), str(entry[1]), int(entry[2]))
        return files

    def remember(self, record: SourceRecord, files: Mapping[str, Fingerprint]) -> None:
        """Put `record` first, with its file list; forget the oldest beyond `KEPT`. The manifest
        is written before the index names it, each atomically."""
        write_text_atomically(self._manifest(record), json.dumps(files, separators=(",", ":")))
        others = [known for known in self.records() if known.tag != record.tag]
        kept, dropped = [record, *others][:KEPT], others[KEPT - 1 :]
        write_text_atomically(self.folder / INDEX_FILE, json.dumps([asdict(r) for r in kept]))
        for gone in dropped:
            self._manifest(gone).unlink(missing_ok=True)

    def _manifest(self, record: SourceRecord) -> Path:
        return self.folder / f"{record.tag.rpartition(':')[2]}.json"
