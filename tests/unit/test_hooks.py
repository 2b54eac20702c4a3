"""`parapipe hook install|uninstall` in real git repositories (the pushes themselves are in
tests/integration/test_hooks.py), and the `.pre-commit-hooks.yaml` the repository ships."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from parapipe.cli import main
from parapipe.cli.parser import build_parser
from parapipe.git.hooks import BACKUP_SUFFIX, MARKER, hook_changes, hook_steps, parse_steps
from parapipe.spec.load import load_pipeline
from tests.helpers.git import git, init_repo

REPO_ROOT = Path(__file__).parent.parent.parent
SPEC = """\
image: {from: busybox:latest}
steps:
  lint: {run: x, tags: [pre-push]}
  unit: {run: x, tags: [pre-push, fast]}
  e2e: {run: x}
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = init_repo(tmp_path / "repo")
    (folder / "pipelines").mkdir()
    (folder / "pipelines" / "ci.yaml").write_text(SPEC)
    monkeypatch.chdir(folder)
    return folder


def hook_of(repo: Path) -> Path:
    return repo / ".git" / "hooks" / "pre-push"


def test_install_writes_an_executable_hook_that_runs_parapipe(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hook", "install", "--steps", "lint,e2e"]) == 0
    assert "runs lint, e2e of pipelines/ci.yaml" in capsys.readouterr().out
    hook = hook_of(repo)
    assert os.access(hook, os.X_OK)
    text = hook.read_text()
    assert MARKER in text
    assert f"python={sys.executable}" in text
    assert '-m parapipe hook run -f pipelines/ci.yaml --steps lint,e2e -- "$@"' in text
    # The hook's command line is one the CLI accepts.
    args = build_parser().parse_args(
        ["hook", "run", "-f", "pipelines/ci.yaml", "--steps", "lint,e2e", "--", "origin", "url"]
    )
    assert (args.remote, args.url) == ("origin", "url")


def test_the_hook_runs_with_plain_sh(repo: Path, tmp_path: Path) -> None:
    """With its Python gone and no parapipe on PATH, it says so and stops the push."""
    main(["hook", "install"])
    hook = hook_of(repo)
    hook.write_text(hook.read_text().replace(sys.executable, str(tmp_path / "gone" / "python")))
    done = subprocess.run(
        ["sh", str(hook), "origin", "url"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 1
    assert "parapipe is not installed" in done.stderr


def test_install_refuses_a_hook_it_did_not_write_unless_forced_and_keeps_a_backup(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hook = hook_of(repo)
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\necho mine\n")
    assert main(["hook", "install"]) == 2
    assert "not written by parapipe; use --force" in capsys.readouterr().err
    assert hook.read_text() == "#!/bin/sh\necho mine\n"

    assert main(["hook", "install", "--force"]) == 0
    backup = hook.with_name("pre-push" + BACKUP_SUFFIX)
    assert backup.read_text() == "#!/bin/sh\necho mine\n"
    assert MARKER in hook.read_text()
    assert main(["hook", "install", "--steps", "unit"]) == 0  # its own hook: replaced freely

    assert main(["hook", "uninstall"]) == 0
    assert hook.read_text() == "#!/bin/sh\necho mine\n"  # the user's hook is back
    assert not backup.exists()


def test_uninstall_leaves_a_foreign_hook_and_is_quiet_when_there_is_none(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hook", "uninstall"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    hook = hook_of(repo)
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\n")
    assert main(["hook", "uninstall"]) == 2
    assert "was not written by parapipe: leaving it" in capsys.readouterr().err
    assert hook.exists()


def test_install_follows_core_hooks_path(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", "githooks")
    assert main(["hook", "install"]) == 0
    assert MARKER in (repo / "githooks" / "pre-push").read_text()
    assert not hook_of(repo).exists()


def test_install_checks_the_steps_and_needs_a_repository(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["hook", "install", "--steps", "lnt"]) == 2
    assert "no step named 'lnt' (did you mean 'lint'?)" in capsys.readouterr().err
    assert main(["hook", "install", "--steps", "lint,,unit"]) == 2
    elsewhere = tmp_path / "plain"
    (elsewhere / "pipelines").mkdir(parents=True)
    (elsewhere / "pipelines" / "ci.yaml").write_text(SPEC)
    monkeypatch.chdir(elsewhere)
    assert main(["hook", "install"]) == 2
    assert "not in a git repository" in capsys.readouterr().err


def test_the_steps_default_to_those_tagged_pre_push_else_all(repo: Path) -> None:
    pipeline = load_pipeline(repo / "pipelines" / "ci.yaml")
    assert hook_steps(pipeline, ()) == ("lint", "unit")
    assert hook_steps(pipeline, ("e2e",)) == ("e2e",)
    untagged = repo / "other.yaml"
    untagged.write_text("image: {from: busybox:latest}\nsteps:\n  a: {run: x}\n")
    assert hook_steps(load_pipeline(untagged), ()) == ()  # empty: every step
    assert parse_steps(" a , b ") == ("a", "b")


def test_pre_commit_refs_take_precedence_over_stdin(repo: Path) -> None:
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    (repo / "new.txt").write_text("x")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "two")
    pipeline = load_pipeline(repo / "pipelines" / "ci.yaml")
    env = {"PRE_COMMIT_FROM_REF": "HEAD~1", "PRE_COMMIT_TO_REF": "HEAD"}
    assert hook_changes(pipeline, "garbage", "origin", env).files == {"new.txt"}
    assert hook_changes(pipeline, None, "origin", {}).files is None


def test_the_shipped_pre_commit_hook_is_a_pre_push_stage_hook_running_hook_run() -> None:
    hooks = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["id"] == "parapipe"
    assert hook["stages"] == ["pre-push"]
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    assert hook["always_run"] is True
    command = hook["entry"].split()
    assert command[0] == "parapipe"
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.hook_command) == ("hook", "run")
