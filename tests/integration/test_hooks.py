"""The pre-push hook end to end: real `git push` to a local bare remote, real containers."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers.docker import BUSYBOX
from tests.helpers.git import commit, init_repo
from tests.helpers.git import git_said as git  # the pushes' output: the hook's
from tests.helpers.project import Project

pytestmark = pytest.mark.docker


@pytest.fixture
def repo(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The project as a git repository with a bare remote `origin` and the hook installed."""
    remote = tmp_path_factory.mktemp("remote") / "origin.git"
    git(remote.parent, "init", "-q", "--bare", str(remote))
    init_repo(project.root)
    git(project.root, "remote", "add", "origin", str(remote))
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          lint: {{run: "echo linted", tags: [pre-push]}}
          docs: {{run: "echo built docs", tags: [pre-push], when: {{changed: [docs/**]}}}}
          slow: {{run: "echo never before a push"}}
    """)
    commit(project.root, "first", **{"src__app.txt": "1", "docs__index.md": "docs"})
    installed = subprocess.run(
        [sys.executable, "-m", "parapipe", "hook", "install", "-f", "ci.yaml"],
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout
    return project


def ran(project: Project) -> set[str]:
    """The steps that ran in the last run (each has a log)."""
    return {log.stem for log in project.last_run().glob("*.log") if log.stem != "image.build"}


def test_pushes_run_the_tagged_steps_whose_files_changed(repo: Project) -> None:
    root = repo.root
    # The first push: the remote has no default branch to compare with, so everything runs.
    first = git(root, "push", "origin", "main")
    assert "running every step" in first.stdout
    assert "no default branch of 'origin'" in first.stdout
    assert ran(repo) == {"lint", "docs"}  # the tagged steps; `slow` is not one
    git(root, "remote", "set-head", "origin", "main")

    # Only src/ changed: docs is left out, lint runs.
    commit(root, "code", **{"src__app.txt": "2"})
    pushed = git(root, "push", "origin", "main")
    assert "1 file changed in main" in pushed.stdout
    assert re.search(
        r"^docs +\| skipped \(no matching change\): no changed file matches docs/\*\*$",
        pushed.stdout,
        re.M,
    )
    assert ran(repo) == {"lint"}

    # A new branch is compared with where it left main: its docs change counts, main's not.
    git(root, "checkout", "-q", "-b", "feature")
    commit(root, "docs", **{"docs__index.md": "better docs"})
    runs_before = len(repo.runs())
    pushed = git(root, "push", "origin", "feature")
    assert "1 file changed in feature" in pushed.stdout
    assert ran(repo) == {"lint", "docs"}
    assert len(repo.runs()) == runs_before + 1

    # Deleting a branch checks nothing, and runs nothing.
    deleted = git(root, "push", "origin", "--delete", "feature")
    assert "the push only deletes refs: nothing to check" in deleted.stdout
    assert len(repo.runs()) == runs_before + 1


def test_a_failing_step_stops_the_push(repo: Project) -> None:
    root = repo.root
    spec = (root / "ci.yaml").read_text().replace('"echo linted"', '"echo lint error; exit 3"')
    commit(root, "break lint", **{"ci.yaml": spec})
    refused = git(root, "push", "origin", "main", check=False)
    assert refused.returncode != 0
    assert "lint error" in refused.stdout
    assert "failed to push" in refused.stdout
    remote_heads = git(root, "ls-remote", "--heads", "origin").stdout
    assert remote_heads == ""  # nothing reached the remote
    assert git(root, "push", "--no-verify", "origin", "main").returncode == 0
