"""Real git in temporary folders, for the tests of `when.changed`, hooks and image sources."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Commits need an author; the test machine's git config may name none.
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def git(folder: Path, *args: str) -> str:
    """git in `folder`, raising when it fails; its stdout, stripped."""
    done = subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **IDENTITY},
    )
    return done.stdout.strip()


def git_said(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """git, with stdout and stderr merged: a hook's output goes to either."""
    done = subprocess.run(
        ["git", "-C", str(folder), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=180,
    )
    if check:
        assert done.returncode == 0, done.stdout
    return done


def init_repo(folder: Path) -> Path:
    """`folder` (made if missing) as a git repository on branch main, with an identity."""
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "-q", "-b", "main")
    git(folder, "config", "user.email", "test@example.com")
    git(folder, "config", "user.name", "test")
    return folder


def commit(folder: Path, message: str, **files: str) -> str:
    """Write `files` (`__` in a name is a `/`), commit everything; the new commit's hash."""
    for name, text in files.items():
        path = folder / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", message)
    return git(folder, "rev-parse", "HEAD")
