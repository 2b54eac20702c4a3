"""Which files of `image.source` go into the image: what git would add (tracked, plus untracked
and not ignored), or, outside a work tree or without git, what the `.gitignore` files leave;
then `image.exclude`. Never `.git` or parapipe's own state folder.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pathspec

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
    # A path shows up once per merge stage while a conflict is unresolved. Decoded whole and
    # joined as plain strings, not Path: this runs once per file of a large tree.
    entries = set(os.fsdecode(listing.stdout).split("\0"))
    entries.discard("")
    for entry in sorted(entries):
        path = entry.rstrip("/")
        try:
            status = os.lstat(f"{root}/{path}")
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
