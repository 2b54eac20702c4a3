"""The digests of the image's source files, remembered by their stat, as git's index does: an
unchanged re-run stats every file but reads none.

An entry is trusted only while the file's size, mtime and inode are what they were, and
only when the file's mtime is older than the cache file itself ("racy git"): a file written in
the same clock tick as the cache could change again without its mtime moving, so it is read
again next time. The cache lives in the state folder, one file per source folder
(`.parapipe/digests/<hash of its path>.json`), written whole and atomically; a cache that cannot
be read is an empty one.

Not the ctime, unlike git's index by default: the image's build context hard-links the source
files, which moves their ctime on every build (what git's `core.trustctime=false` is for).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Final

from parapipe.run.state.atomic import write_text_atomically

CACHE_FOLDER: Final = "digests"
FORMAT: Final = 2  # 1 had the ctime too

# path -> (size, mtime_ns, inode, sha256 hex digest)
Entry = tuple[int, int, int, str]


def stat_key(status: os.stat_result) -> tuple[int, int, int]:
    return (status.st_size, status.st_mtime_ns, status.st_ino)


class DigestCache:
    """Content digests of files under one folder, reused while their stat says unchanged."""

    def __init__(
        self, state_dir: Path, source: Path, stats: dict[str, os.stat_result] | None = None
    ) -> None:
        name = hashlib.sha256(os.fsencode(source.absolute())).hexdigest()[:16]
        self.path = state_dir / CACHE_FOLDER / f"{name}.json"
        self._old: dict[str, Entry] = {}
        self._new: dict[str, Entry] = {}
        self._changed = False
        # Entries with an mtime at or after this are racy: not trusted (the cache's own mtime).
        self._written_ns = 0
        self.hashed = 0  # files read this time, for tests and the benchmark
        self._stats = stats or {}  # `lstat`s already made while listing the files
        self._load()

    def lstat(self, full: str, path: str) -> os.stat_result:
        """The `lstat` of `full` (`path` in the cache): the one made while listing, or a new one.
        Raises OSError."""
        known = self._stats.get(path)
        return known if known is not None else os.lstat(full)

    def digest(self, full: str | Path, path: str, status: os.stat_result) -> str:
        """The sha256 of the regular file `full` (`path` in the cache), whose `lstat` is
        `status`: from the cache when it can be trusted, else read. Raises OSError."""
        key = stat_key(status)
        seen = self._new.get(path)  # the same file asked for twice in one plan
        if seen is not None and seen[:3] == key:
            return seen[3]
        known = self._old.get(path)
        if (
            known is not None
            and known[:3] == key
            and key[1] < self._written_ns
            and isinstance(known[3], str)
        ):
            self._new[path] = known
            return known[3]
        with open(full, "rb") as content:
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
        # Not checked entry by entry (a large tree has many): `digest` trusts an entry only when
        # its three numbers equal a stat's and its digest is a string.
        self._old = {
            path: tuple(entry)
            for path, entry in files.items()
            if isinstance(entry, list) and len(entry) == 4
        }
