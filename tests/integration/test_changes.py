"""`--changed-since` and `--no-deps` through the CLI, with real git and real containers."""

from __future__ import annotations

import pytest

from tests.helpers.docker import BUSYBOX
from tests.helpers.git import commit, init_repo
from tests.helpers.project import Project

pytestmark = pytest.mark.docker


@pytest.fixture
def repo(project: Project) -> Project:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          build: {{run: "echo built", when: {{changed: [src/**]}}}}
          docs: {{run: "echo docs", when: {{changed: [docs/**, "*.md"]}}}}
          publish: {{run: "echo published", needs: [build, docs]}}
    """)
    (project.root / "src").mkdir()
    (project.root / "src" / "a.txt").write_text("1")
    init_repo(project.root)
    commit(project.root, "1")
    return project


def statuses(output: str) -> dict[str, str]:
    rows = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("build", "docs", "publish") and line.startswith("  "):
            rows[parts[0]] = " ".join(parts[1:])
    return rows


def test_changed_since_runs_the_steps_whose_files_changed(repo: Project) -> None:
    (repo.root / "src" / "a.txt").write_text("2")  # not committed: the working tree counts
    result = repo.run("run", "-f", "ci.yaml", "--changed-since", "HEAD", "--output", "plain")
    assert result.exit_code == 0, result.output
    assert "parapipe: when.changed: 1 file changed since HEAD" in result.stderr
    rows = statuses(result.stdout)
    assert rows["build"].startswith("passed")
    assert rows["docs"].startswith("skipped (no matching change)")
    assert rows["publish"].startswith("passed")  # an unchanged need counts as passed


def test_when_nothing_matches_no_image_is_built(repo: Project) -> None:
    result = repo.run("run", "-f", "ci.yaml", "publish", "--no-deps", "--changed-since", "HEAD")
    assert result.exit_code == 0, result.output  # publish has no `when`: it runs
    assert "build" not in statuses(result.stdout)
    result = repo.run("run", "-f", "ci.yaml", "build", "docs", "--changed-since", "HEAD")
    assert result.exit_code == 0, result.output
    assert "image:" not in result.stdout  # no step needed it
    assert "2 skipped (no matching change)" in result.stdout


def test_usage_errors_come_before_any_engine(repo: Project) -> None:
    result = repo.run("run", "-f", "ci.yaml", "--changed-since", "no-such-ref")
    assert result.exit_code == 2
    assert "'no-such-ref' is not a commit in this repository" in result.stderr
    result = repo.run("run", "-f", "ci.yaml", "--no-deps")
    assert result.exit_code == 2
    assert "--no-deps needs the steps to run" in result.stderr
    (repo.root / "out").mkdir()
    result = repo.run("run", "-f", "ci.yaml", "--junit", "out")
    assert result.exit_code == 2
    assert "--junit out: is a folder" in result.stderr
    assert repo.runs() == []
