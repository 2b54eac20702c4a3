"""Which files changed, for `when: {changed: [globs]}`: since a ref, or in the refs being pushed.
The globs themselves are matched in `parapipe.globs`, with no git.

Paths are POSIX paths relative to the pipeline's source folder, the folder the globs are written
against. When the changes cannot be known, the answer says why and carries no files, and every
step runs: a step is only ever left out because we know nothing it watches changed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from parapipe.errors import UsageError
from parapipe.git.runner import GitFailed, run_git

_ZERO_SHA = re.compile(r"0+")


@dataclass(frozen=True, kw_only=True)
class Changes:
    files: frozenset[str] | None  # relative to the source folder; None: unknown, run everything
    note: str  # one line for the user: what was compared, or why every step runs
    nothing_pushed: bool = False  # the push only deletes refs: there is nothing to check


# -- git -----------------------------------------------------------------------------------------


def _names(output: str) -> list[str]:
    return [name for name in output.split("\0") if name]


def _diff(top: str, *revisions: str) -> list[str]:
    """Paths relative to the repository's top, whatever `diff.relative` says. No rename
    detection: a renamed file changes both its old and its new path."""
    output = run_git(
        Path(top), "diff", "--name-only", "--no-relative", "--no-renames", "-z", *revisions, "--"
    )
    return _names(output)


def _under_source(source: Path, top: str, paths: Iterable[str]) -> frozenset[str]:
    """Repository paths turned into paths relative to the source folder (others dropped)."""
    prefix = Path(os.path.relpath(source.resolve(), Path(top).resolve())).as_posix()
    if prefix == ".":
        return frozenset(paths)
    if prefix.startswith("../"):
        return frozenset()
    return frozenset(p[len(prefix) + 1 :] for p in paths if p.startswith(prefix + "/"))


def _top(source: Path) -> str:
    return run_git(source, "rev-parse", "--show-toplevel").strip()


def changed_since(source: Path, ref: str) -> Changes:
    """`--changed-since REF`: files that differ between the working tree and the merge-base of
    REF and HEAD, plus untracked files; the steps run on the working tree, so that is what they
    would see. A REF that names nothing is a usage error."""
    try:
        top = _top(source)
    except GitFailed as exc:
        raise UsageError(f"--changed-since needs a git repository: {exc}") from exc
    try:
        run_git(source, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GitFailed as exc:
        raise UsageError(f"--changed-since: {ref!r} is not a commit in this repository") from exc
    try:
        base = run_git(source, "merge-base", ref, "HEAD").strip()
        files = _diff(top, base)
        files += _names(run_git(Path(top), "ls-files", "-z", "--others", "--exclude-standard"))
    except GitFailed as exc:
        return Changes(files=None, note=f"cannot compare with {ref} ({exc}): running every step")
    changed = _under_source(source, top, files)
    return Changes(files=changed, note=f"{_count(changed)} changed since {ref} ({base[:10]})")


def pushed_changes(source: Path, ranges: str, remote: str) -> Changes:
    """The files changed by a push, from the lines git hands a pre-push hook on stdin:
    `<local ref> <local sha> <remote ref> <remote sha>`, one per ref pushed.

    A new branch is compared with its merge-base with the remote's default branch; a deleted
    branch adds nothing. When any range cannot be worked out, the changes are unknown.
    """
    lines = [line.split() for line in ranges.splitlines() if line.strip()]
    if not lines:
        return Changes(files=None, note="git named no refs being pushed: running every step")
    try:
        top = _top(source)
        files: set[str] = set()
        compared: list[str] = []
        for fields in lines:
            pushed = _pushed_range(source, fields, remote)
            if pushed is not None:
                ref, base, tip = pushed
                files.update(_diff(top, base, tip))
                compared.append(f"{_short_ref(ref)} {base[:10]}..{tip[:10]}")
    except GitFailed as exc:
        return Changes(
            files=None, note=f"cannot tell what the push changes ({exc}): running every step"
        )
    if not compared:
        return Changes(files=frozenset(), note="the push only deletes refs", nothing_pushed=True)
    changed = _under_source(source, top, files)
    return Changes(files=changed, note=f"{_count(changed)} changed in {', '.join(compared)}")


def _pushed_range(source: Path, fields: list[str], remote: str) -> tuple[str, str, str] | None:
    """(local ref, base, tip) of one pre-push line; None for a deleted ref."""
    if len(fields) != 4:
        raise GitFailed(f"unexpected pre-push line {' '.join(fields)!r}")
    local_ref, local_sha, _remote_ref, remote_sha = fields
    if _ZERO_SHA.fullmatch(local_sha):
        return None  # a deleted ref: nothing new to check
    if _ZERO_SHA.fullmatch(remote_sha):
        return local_ref, _new_branch_base(source, local_sha, remote), local_sha
    # A force-push over commits this clone never fetched leaves nothing to compare with.
    run_git(source, "cat-file", "-e", f"{remote_sha}^{{commit}}")
    return local_ref, remote_sha, local_sha


def refs_changes(source: Path, from_ref: str, to_ref: str) -> Changes:
    """The files changed between two refs (pre-commit hands a pre-push hook these)."""
    try:
        top = _top(source)
        changed = _under_source(source, top, _diff(top, from_ref, to_ref))
    except GitFailed as exc:
        return Changes(
            files=None, note=f"cannot compare {from_ref}..{to_ref} ({exc}): running every step"
        )
    return Changes(
        files=changed, note=f"{_count(changed)} changed in {from_ref[:10]}..{to_ref[:10]}"
    )


def _new_branch_base(source: Path, local_sha: str, remote: str) -> str:
    """Where a branch new on the remote forked from the remote's default branch."""
    default = _default_branch(source, remote)
    return run_git(source, "merge-base", default, local_sha).strip()


def _default_branch(source: Path, remote: str) -> str:
    # `git push URL` hands the hook the URL as the remote's name: it has no tracking refs.
    try:
        head = run_git(source, "symbolic-ref", "--quiet", f"refs/remotes/{remote}/HEAD").strip()
    except GitFailed:
        head = ""
    candidates = [head] if head else []
    candidates += [f"refs/remotes/{remote}/main", f"refs/remotes/{remote}/master"]
    for candidate in candidates:
        try:
            run_git(source, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        except GitFailed:
            continue
        return candidate
    raise GitFailed(f"a new branch, and no default branch of {remote!r} to compare it with")


def _short_ref(ref: str) -> str:
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


def _count(files: frozenset[str]) -> str:
    return f"{len(files)} file{'s' if len(files) != 1 else ''}"
