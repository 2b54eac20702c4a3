"""The one way parapipe runs git, with one environment policy.

- Variables a git hook exports (`GIT_DIR`, `GIT_INDEX_FILE`, `GIT_WORK_TREE`, ...) are dropped:
  parapipe runs inside pre-push hooks, and a relative `GIT_DIR=.git` would point `git -C folder`
  at another repository or index than the one holding `folder`. Those that only configure git
  (`GIT_EXEC_PATH`, `GIT_CONFIG_*`) are kept.
- No optional locks: a read-only question must never contend with the user's own git.
- The C locale, as the answers and errors are read by parapipe.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final

GIT_TIMEOUT: Final = 30.0
_GIT_ENV_KEPT: Final = ("GIT_EXEC_PATH", "GIT_CONFIG_")


class GitFailed(Exception):
    """git answered with an error; the message says what was asked and git's last line."""


class GitUnavailable(GitFailed):
    """git could not be run at all (not installed, or it did not answer in time)."""


def git_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    kept = {
        name: value
        for name, value in environ.items()
        if not name.startswith("GIT_") or name.startswith(_GIT_ENV_KEPT)
    }
    return {**kept, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


def run_git(folder: Path, *args: str) -> str:
    """git's output for `git -C folder ARGS`; raises `GitFailed` when it fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
            env=git_environment(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitUnavailable(f"git {args[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise GitFailed(f"git {args[0]}: {detail}")
    return done.stdout
