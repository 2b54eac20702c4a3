"""The digests of the image's source files, remembered by their stat, as git's index does: an
unchanged re-run stats every file but reads none.

An entry is trusted only while the file's size, mtime, ctime and inode are what they were, and
only when the file's mtime is older than the cache file itself ("racy git"): a file written in
the same clock tick as the cache could change again without its mtime moving, so it is read
again next time. The cache lives in the state folder, one file per source folder
(`.parapipe/digests/<hash of its path>.json`), written whole and atomically; a cache that cannot
be read is an empty one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Final

from parapipe.run.state.atomic import write_text_atomically

CACHE_FOLDER: Final = "digests"
FORMAT: Final = 1

# path -> (size, mtime_ns, ctime_ns, inode, sha256 hex digest)
Entry = tuple[int, int, int, int, str]


def stat_key(status: os.stat_result) -> tuple[int, int, int, int]:
    return (status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino)


class DigestCache:
    """Content digests of files under one folder, reused while their stat says unchanged."""

    def __init__(self, state_dir: Path, source: Path) -> None:
        name = hashlib.sha256(os.fsencode(source.absolute())).hexdigest()[:16]
        self.path = state_dir / CACHE_FOLDER / f"{name}.json"
        self._old: dict[str, Entry] = {}
        self._new: dict[str, Entry] = {}
        self._changed = False
        # Entries with an mtime at or after this are racy: not trusted (the cache's own mtime).
        self._written_ns = 0
        self.hashed = 0  # files read this time, for tests and the benchmark
        self._load()

    def digest(self, full: Path, path: str, status: os.stat_result) -> str:
        """The sha256 of the regular file `full` (`path` in the cache), whose `lstat` is
        `status`: from the cache when it can be trusted, else read. Raises OSError."""
        key = stat_key(status)
        seen = self._new.get(path)  # the same file asked for twice in one plan
        if seen is not None and seen[:4] == key:
            return seen[4]
        known = self._old.get(path)
        if known is not None and known[:4] == key and key[1] < self._written_ns:
            self._new[path] = known
            return known[4]
        with full.open("rb") as content:
            # Read in chunks: a large file is never held in memory whole.
            digest = hashlib.file_digest(content, "sha256").hexdigest()
        self.hashed += 1
        self._new[path] = (*key, digest)
        self._changed = True
        return digest

    def save(self) -> None:
        """Write the entries used since loading (files that went are forgotten), when any was
        read again or some went; an OSError leaves the old cache, which is only slower."""
        if not self._changed and self._new.keys() == self._old.keys():
            return
        text = json.dumps({"format": FORMAT, "files": self._new}, separators=(",", ":"))
        try:
            write_text_atomically(self.path, text)
        except OSError:
            return
        self._old, self._new, self._changed = self._new, {}, False
        try:
            self._written_ns = self.path.stat().st_mtime_ns
        except OSError:
            self._written_ns = 0

    def _load(self) -> None:
        try:
            self._written_ns = self.path.stat().st_mtime_ns
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
            return
        files = loaded.get("files")
        if not isinstance(files, dict):
            return
        for path, entry in files.items():
            if (
                isinstance(entry, list)
                and len(entry) == 5
                and all(isinstance(number, int) for number in entry[:4])
                and isinstance(entry[4], str)
            ):
                self._old[path] = (entry[0], entry[1], entry[2], entry[3], entry[4])
