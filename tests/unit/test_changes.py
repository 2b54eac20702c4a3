"""Changed files for `when.changed`: the globs, and real git repositories in temp folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from parapipe.errors import UsageError
from parapipe.git.changes import changed_since, pushed_changes, refs_changes
from parapipe.globs import glob_problem, matching, unchanged_reason
from tests.helpers.git import commit, git, init_repo

ZERO = "0" * 40


@pytest.mark.parametrize(
    ("glob", "path", "selected"),
    [
        ("src/**", "src/a.py", True),
        ("src/**", "src/deep/b/c.py", True),
        ("src/**", "srcx/a.py", False),
        ("src", "src/deep/a.py", True),  # a folder covers what is in it
        ("src/", "src/a.py", True),
        ("*.py", "a.py", True),
        ("*.py", "src/a.py", False),  # `*` stays within one folder, as in GitHub's `paths`
        ("**/*.py", "a.py", True),
        ("**/*.py", "src/deep/a.py", True),
        ("**.py", "src/deep/a.py", True),
        ("docs/*.md", "docs/a.md", True),
        ("docs/*.md", "docs/sub/a.md", False),
        ("te?t/x", "test/x", True),
        ("te?t/x", "te/t/x", False),
        ("[ab].txt", "a.txt", True),
        ("[!ab].txt", "a.txt", False),
        ("[!ab].txt", "c.txt", True),
        ("./README.md", "README.md", True),
        ("a+b(c).txt", "a+b(c).txt", True),  # regex characters are literal
    ],
)
def test_globs_select_as_github_paths_filters_do(glob: str, path: str, selected: bool) -> None:
    assert (matching([glob], [path]) == [path]) is selected


def test_a_negated_glob_takes_back_what_earlier_globs_selected() -> None:
    files = ["src/a.py", "src/a_test.py", "docs/x.md"]
    assert matching(["src/**", "!src/*_test.py"], files) == ["src/a.py"]
    assert matching(["!src/*_test.py", "src/**"], files) == ["src/a.py", "src/a_test.py"]


@pytest.mark.parametrize(
    ("glob", "problem"),
    [
        ("", "is empty"),
        ("!", "is empty"),
        ("/src/**", "absolute"),
        ("C:\\src", "absolute"),
        ("src\\a", "'/'"),
        ("../other/**", "'..'"),
        ("[abc", "closing"),
    ],
)
def test_bad_globs_say_why(glob: str, problem: str) -> None:
    found = glob_problem(glob)
    assert found is not None
    assert problem in found


def test_good_globs_have_no_problem() -> None:
    assert glob_problem("src/**/*.py") is None
    assert glob_problem("!docs/**") is None


def test_a_step_is_unchanged_only_when_the_changes_are_known_and_none_matches() -> None:
    assert unchanged_reason(None, frozenset()) is None  # no `when`
    assert unchanged_reason(("docs/**",), None) is None  # changes unknown: it runs
    assert unchanged_reason(("docs/**",), frozenset({"docs/a.md"})) is None
    reason = unchanged_reason(("docs/**", "*.md"), frozenset({"src/a.py"}))
    assert reason == "no changed file matches docs/**, *.md"


# -- real repositories -----------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = init_repo(tmp_path / "repo")
    commit(folder, "first", **{"a.txt": "a", "app__src__m.py": "m", "docs__x.md": "x"})
    return folder


def test_changed_since_counts_commits_uncommitted_and_untracked_files(repo: Path) -> None:
    commit(repo, "second", **{"docs__x.md": "changed"})
    (repo / "a.txt").write_text("edited, not committed")
    (repo / "new.txt").write_text("untracked")
    (repo / ".gitignore").write_text("ignored.txt\n")
    (repo / "ignored.txt").write_text("ignored")
    changes = changed_since(repo, "HEAD~1")
    assert changes.files == {"docs/x.md", "a.txt", "new.txt", ".gitignore"}
    assert "4 files changed since HEAD~1" in changes.note


def test_a_rename_changes_both_the_old_and_the_new_path(repo: Path) -> None:
    git(repo, "mv", "docs/x.md", "app/x.md")
    git(repo, "commit", "-q", "-m", "move")
    assert changed_since(repo, "HEAD~1").files == {"docs/x.md", "app/x.md"}


def test_changed_since_compares_with_the_merge_base_not_the_refs_tip(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    commit(repo, "on feature", **{"docs__x.md": "feature"})
    git(repo, "checkout", "-q", "main")
    commit(repo, "on main", **{"a.txt": "main moved on"})
    git(repo, "checkout", "-q", "feature")
    assert changed_since(repo, "main").files == {"docs/x.md"}


def test_changed_since_gives_paths_relative_to_a_source_subfolder(repo: Path) -> None:
    commit(repo, "both", **{"app__src__m.py": "changed", "a.txt": "changed"})
    assert changed_since(repo / "app", "HEAD~1").files == {"src/m.py"}


def test_changed_since_an_unknown_ref_or_outside_git_is_a_usage_error(
    repo: Path, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="'nope' is not a commit"):
        changed_since(repo, "nope")
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(UsageError, match="needs a git repository"):
        changed_since(outside, "HEAD")


@pytest.fixture
def pushed(repo: Path, tmp_path: Path) -> Path:
    """`repo` with a bare remote `origin` that has main, and origin/HEAD pointing at it."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "--no-verify", "origin", "main")
    git(repo, "remote", "set-head", "origin", "main")
    return repo


def test_a_pushed_branch_is_compared_with_the_remotes_commit(pushed: Path) -> None:
    before = git(pushed, "rev-parse", "HEAD")
    after = commit(pushed, "docs", **{"docs__x.md": "new"})
    line = f"refs/heads/main {after} refs/heads/main {before}\n"
    changes = pushed_changes(pushed, line, "origin")
    assert changes.files == {"docs/x.md"}
    assert f"main {before[:10]}..{after[:10]}" in changes.note


def test_a_new_branch_is_compared_with_its_merge_base_with_the_default_branch(
    pushed: Path,
) -> None:
    git(pushed, "checkout", "-q", "-b", "feature")
    commit(pushed, "one", **{"a.txt": "1"})
    tip = commit(pushed, "two", **{"app__src__m.py": "2"})
    line = f"refs/heads/feature {tip} refs/heads/feature {ZERO}\n"
    assert pushed_changes(pushed, line, "origin").files == {"a.txt", "app/src/m.py"}


def test_deleting_a_branch_has_nothing_to_check(pushed: Path) -> None:
    line = f"(delete) {ZERO} refs/heads/old {git(pushed, 'rev-parse', 'HEAD')}\n"
    changes = pushed_changes(pushed, line, "origin")
    assert changes.nothing_pushed
    assert changes.files == frozenset()


def test_several_refs_add_up_and_deletions_add_nothing(pushed: Path) -> None:
    base = git(pushed, "rev-parse", "HEAD")
    tip = commit(pushed, "docs", **{"docs__x.md": "new"})
    git(pushed, "tag", "v1", base)
    lines = (
        f"refs/heads/main {tip} refs/heads/main {base}\n(delete) {ZERO} refs/heads/gone {base}\n"
    )
    changes = pushed_changes(pushed, lines, "origin")
    assert changes.files == {"docs/x.md"}
    assert not changes.nothing_pushed


@pytest.mark.parametrize(
    ("make_line", "why"),
    [
        # A new branch pushed to a remote with no default branch known here.
        (
            lambda tip: f"refs/heads/x {tip} refs/heads/x {ZERO}\n",
            "no default branch of 'elsewhere'",
        ),
        # The remote is at a commit this clone never had (someone else pushed, we force).
        (lambda tip: f"refs/heads/main {tip} refs/heads/main {'1' * 40}\n", "cat-file"),
        (lambda tip: "garbage\n", "unexpected pre-push line"),
    ],
)
def test_when_the_base_cannot_be_found_everything_runs_and_the_note_says_why(
    pushed: Path, make_line: object, why: str
) -> None:
    tip = git(pushed, "rev-parse", "HEAD")
    line = make_line(tip)  # type: ignore[operator]
    changes = pushed_changes(pushed, line, "elsewhere")
    assert changes.files is None
    assert why in changes.note
    assert changes.note.endswith("running every step")


def test_no_refs_on_stdin_means_unknown_changes(pushed: Path) -> None:
    changes = pushed_changes(pushed, "", "origin")
    assert changes.files is None
    assert "running every step" in changes.note


def test_pre_commits_from_and_to_refs(pushed: Path) -> None:
    before = git(pushed, "rev-parse", "HEAD")
    after = commit(pushed, "docs", **{"docs__x.md": "new"})
    assert refs_changes(pushed, before, after).files == {"docs/x.md"}
    assert refs_changes(pushed, "nope", after).files is None
