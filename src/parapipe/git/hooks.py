"""`parapipe hook install|uninstall`: a git pre-push hook that runs the pipeline before a push.

The hook is a small shell script that hands git's arguments and stdin (the refs being pushed)
to `parapipe hook run`, which runs the chosen steps and lets the push go on only if they pass.
It is recognised by a marker line: parapipe never overwrites or removes a hook it did not
write, unless told to with `--force`, and then keeps the old one as `pre-push.parapipe-backup`
(put back by `uninstall`).
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from parapipe.errors import UsageError
from parapipe.git.changes import Changes, pushed_changes, refs_changes
from parapipe.git.runner import GitFailed, GitUnavailable, run_git
from parapipe.model import Pipeline

HOOK_NAME = "pre-push"
MARKER = "# parapipe-pre-push-hook v1"
BACKUP_SUFFIX = ".parapipe-backup"
PRE_PUSH_TAG = "pre-push"


def hook_steps(pipeline: Pipeline, steps: Sequence[str]) -> tuple[str, ...]:
    """The steps a hook runs: those given, else those tagged `pre-push`, else every step."""
    if steps:
        return tuple(steps)
    tagged = tuple(name for name, step in pipeline.steps.items() if PRE_PUSH_TAG in step.tags)
    return tagged  # empty: every step


def parse_steps(text: str | None) -> tuple[str, ...]:
    """`--steps a,b` as ('a', 'b')."""
    if not text:
        return ()
    names = tuple(name.strip() for name in text.split(","))
    if any(not name for name in names):
        raise UsageError(f"--steps {text!r}: give step names separated by commas, such as 'a,b'")
    return names


def hooks_dir(folder: Path) -> Path:
    """The hooks folder of the repository holding `folder` (core.hooksPath and worktrees
    included)."""
    try:
        hooks = run_git(folder, "rev-parse", "--git-path", "hooks")
    except GitUnavailable as exc:
        raise UsageError(f"cannot ask git where the hooks go: {exc}") from exc
    except GitFailed as exc:
        raise UsageError(f"{folder} is not in a git repository: a pre-push hook needs one") from exc
    return folder / hooks.strip()  # relative to `folder` unless git made it absolute


def hook_script(spec: str, steps: Sequence[str], python: str = sys.executable) -> str:
    """The hook: `parapipe hook run` from this Python, or from PATH if this one is gone."""
    args = ["hook", "run", "-f", spec]
    if steps:
        args += ["--steps", ",".join(steps)]
    quoted = " ".join(shlex.quote(arg) for arg in args)
    return f"""#!/bin/sh
{MARKER}
# Written by `parapipe hook install`; `parapipe hook uninstall` removes it.
# It runs the pipeline's steps before each push. To push without it once: git push --no-verify
python={shlex.quote(python)}
if [ -x "$python" ]; then
  exec "$python" -m parapipe {quoted} -- "$@"
elif command -v parapipe >/dev/null 2>&1; then
  exec parapipe {quoted} -- "$@"
fi
echo "parapipe pre-push hook: parapipe is not installed ($python is gone);" \\
  "reinstall it, or push with --no-verify" >&2
exit 1
"""


def is_ours(hook: Path) -> bool:
    try:
        return MARKER in hook.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def install_hook(pipeline: Pipeline, steps: Sequence[str], *, force: bool = False) -> str:
    """Write the pre-push hook; return one line saying what was done."""
    hooks = hooks_dir(pipeline.project_root)
    hook = hooks / HOOK_NAME
    backup = hooks / (HOOK_NAME + BACKUP_SUFFIX)
    note = ""
    if hook.exists() and not is_ours(hook):
        if not force:
            raise UsageError(
                f"{hook} exists and was not written by parapipe; "
                "use --force to replace it (it is kept as a backup)"
            )
        if backup.exists():
            raise UsageError(f"{backup} exists already; move it away first")
        os.replace(hook, backup)
        note = f"; the previous hook is kept as {backup}"
    spec = os.path.relpath(pipeline.spec_path, pipeline.project_root)
    if spec.startswith(".."):
        spec = str(pipeline.spec_path)
    hooks.mkdir(parents=True, exist_ok=True)
    hook.write_text(hook_script(spec, steps), encoding="utf-8")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    which = ", ".join(steps) if steps else "the steps tagged pre-push, else every step"
    return f"installed {hook}: runs {which} of {spec} before each push{note}"


def uninstall_hook(folder: Path) -> str:
    """Remove the pre-push hook parapipe wrote and put back a backed-up one."""
    hooks = hooks_dir(folder)
    hook = hooks / HOOK_NAME
    backup = hooks / (HOOK_NAME + BACKUP_SUFFIX)
    if not hook.exists():
        return f"no pre-push hook in {hooks}: nothing to remove"
    if not is_ours(hook):
        raise UsageError(f"{hook} was not written by parapipe: leaving it")
    hook.unlink()
    if backup.exists():
        os.replace(backup, hook)
        return f"removed parapipe's pre-push hook; put back the previous one from {backup}"
    return f"removed {hook}"


def hook_changes(
    pipeline: Pipeline, ranges: str | None, remote: str, environ: Mapping[str, str]
) -> Changes:
    """What the push being checked changes: from pre-commit's `PRE_COMMIT_FROM_REF` and
    `PRE_COMMIT_TO_REF` when pre-commit runs the hook, else from the ranges git gave on stdin."""
    source = pipeline.image.source
    from_ref, to_ref = environ.get("PRE_COMMIT_FROM_REF"), environ.get("PRE_COMMIT_TO_REF")
    if from_ref and to_ref:
        return refs_changes(source, from_ref, to_ref)
    if ranges is None:
        return Changes(files=None, note="no refs on stdin (not run by git): running every step")
    return pushed_changes(source, ranges, remote)
