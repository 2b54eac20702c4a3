"""Glob matching for `when.changed` and `inputs`, with no git: which paths a list of globs
selects, why a glob is not valid, and whether a step's watched files changed.

Paths are POSIX paths relative to the pipeline's source folder, the folder the globs are
written against.

The globs follow GitHub Actions' `paths` filter, and the translation to a regular expression is
our own because no maintained library has those semantics:
- `wcmatch` (GLOBSTAR | NEGATE) applies every `!` pattern to every other pattern, whatever the
  order, and `**` is a globstar only as a whole path segment;
- `pathspec` (gitignore) takes `!` in order, but `**` is also a globstar only as a whole
  segment, and a pattern with no `/` matches at any depth.
GitHub's filter, and ours, takes a `!` glob back only from the globs before it, and `**.py`
crosses folders (`tests/unit/test_changes.py` pins both).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache


def glob_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a `when.changed` or `inputs` glob, or None when it can."""
    body = pattern.removeprefix("!")
    if not body.strip():
        return "is empty"
    if body.startswith("/") or re.match(r"[A-Za-z]:[\\/]", body):
        return "must be relative to the source folder, not absolute"
    if "\\" in body:
        return "must use '/' between folders"
    if ".." in body.split("/"):
        return "must not leave the source folder with '..'"
    try:
        _compile(body)
    except re.error as exc:
        return f"is not a valid glob ({exc.msg})"
    return None


def matching(globs: Sequence[str], files: Iterable[str]) -> list[str]:
    """The files that `globs` select, as GitHub Actions' `paths` filter does.

    `*` and `?` stay within one folder, `**` crosses folders, `[abc]` is a set; a glob that
    names a folder covers everything in it; a glob starting with `!` takes back files that
    earlier globs selected.
    """
    compiled = [(g.startswith("!"), _compile(g.removeprefix("!"))) for g in globs]
    chosen: list[str] = []
    for path in files:
        selected = False
        for negated, regex in compiled:
            if regex.fullmatch(path):
                selected = not negated
        if selected:
            chosen.append(path)
    return chosen


def unchanged_reason(globs: Sequence[str] | None, changed: frozenset[str] | None) -> str | None:
    """Why a step with `when.changed: globs` need not run, or None when it must run: it has no
    such condition, the changes are unknown, or a changed file matches."""
    if globs is None or changed is None or matching(globs, changed):
        return None
    return f"no changed file matches {', '.join(globs)}"


@lru_cache(maxsize=256)
def _compile(glob: str) -> re.Pattern[str]:
    glob = glob.removeprefix("./").rstrip("/")
    parts: list[str] = []
    index = 0
    while index < len(glob):
        char = glob[index]
        if glob.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif glob.startswith("**", index):
            parts.append(".*")
            index += 2
        elif char == "*":
            parts.append("[^/]*")
            index += 1
        elif char == "?":
            parts.append("[^/]")
            index += 1
        elif char == "[":
            end = glob.find("]", index + 2)
            if end == -1:
                raise re.error("'[' without a closing ']'")
            members = glob[index + 1 : end]
            if members.startswith("!"):
                members = "^" + members[1:]
            parts.append("[" + members.replace("\\", "\\\\") + "]")
            index = end + 1
        else:
            parts.append(re.escape(char))
            index += 1
    # A glob matching a folder covers the files under it.
    return re.compile("".join(parts) + "(?:/.*)?", re.DOTALL)
