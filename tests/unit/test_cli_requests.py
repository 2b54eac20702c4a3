"""The command line turns into typed requests before any command runs, and `hook run` runs
exactly the request `parapipe run -f SPEC -- STEP...` would."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from parapipe.cli import main
from parapipe.cli.parser import build_parser
from parapipe.cli.requests import (
    CachePruneRequest,
    ExportGithubRequest,
    GraphRequest,
    HookInstallRequest,
    HookRunRequest,
    HookUninstallRequest,
    Request,
    RunRequest,
    ValidateRequest,
    request_from,
)
from parapipe.git.changes import Changes
from parapipe.model import Pipeline

SPEC = """\
image: {from: busybox:latest}
steps:
  lint: {run: x, tags: [pre-push]}
  unit: {run: x, needs: [lint]}
"""


def parsed(*argv: str) -> Request:
    return request_from(build_parser().parse_args(argv))


def test_run_options_become_typed_values() -> None:
    request = parsed(
        "run", "-f", "ci.yaml", "a", "b", "-j", "3", "--engine", "docker", "--keep-going",
        "--schedule", "fifo", "--output", "plain", "--no-deps", "--changed-since", "main",
        "--no-cache", "--no-prewarm", "--export", "out", "--junit", "j.xml", "--report",
        "r.json", "--timeline", "t.html", "--secret", "A=1", "--secret-file", "B=b.txt",
    )  # fmt: skip
    assert request == RunRequest(
        spec=Path("ci.yaml"),
        steps=("a", "b"),
        jobs=3,
        engine="docker",
        keep_going=True,
        schedule="fifo",
        output="plain",
        no_deps=True,
        changed_since="main",
        no_cache=True,
        prewarm=False,
        export_dir=Path("out"),
        junit=Path("j.xml"),
        report=Path("r.json"),
        timeline=Path("t.html"),
        secret_flags=("A=1",),
        secret_file_flags=("B=b.txt",),
    )
    assert "A=1" not in repr(request)  # a secret's value stays out of any repr


def test_run_defaults_are_the_requests_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARAPIPE_ENGINE", "podman")
    assert parsed("run") == RunRequest(spec=Path("pipelines/ci.yaml"))
    assert RunRequest(spec=Path("x")).engine == "podman"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate", "-f", "s.yaml"], ValidateRequest(spec=Path("s.yaml"))),
        (
            ["graph", "--format", "dot", "a"],
            GraphRequest(spec=Path("pipelines/ci.yaml"), steps=("a",), format="dot"),
        ),
        (
            ["export", "github", "--split", "--install", "pip install x"],
            ExportGithubRequest(
                spec=Path("pipelines/ci.yaml"), split=True, install="pip install x"
            ),
        ),
        (
            ["hook", "install", "--steps", "a, b", "--force"],
            HookInstallRequest(spec=Path("pipelines/ci.yaml"), steps=("a", "b"), force=True),
        ),
        (
            ["hook", "run", "--steps", "a", "--", "upstream", "url"],
            HookRunRequest(spec=Path("pipelines/ci.yaml"), steps=("a",), remote="upstream"),
        ),
        (
            ["cache", "prune", "--max-size", "1K", "--volumes", "--engine", "podman"],
            CachePruneRequest(
                spec=Path("pipelines/ci.yaml"), max_bytes=1024, volumes=True, engine="podman"
            ),
        ),
        (
            ["cache", "prune", "--images", "--keep", "2"],
            CachePruneRequest(
                spec=Path("pipelines/ci.yaml"), max_bytes=2 << 30, images=True, keep_images=2
            ),
        ),
    ],
)
def test_each_command_becomes_its_request(argv: list[str], expected: Request) -> None:
    assert parsed(*argv) == expected


def test_hook_uninstall_names_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parsed("hook", "uninstall") == HookUninstallRequest(folder=tmp_path)


def test_values_argparse_cannot_check_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["cache", "prune", "--max-size", "lots"]) == 2
    assert "--max-size takes a size such as 500M or 2G, not 'lots'" in capsys.readouterr().err
    assert main(["hook", "install", "--steps", "a,,b"]) == 2
    assert "give step names separated by commas" in capsys.readouterr().err


def test_the_cli_choices_match_the_engines_and_output_modes_the_code_knows() -> None:
    from parapipe.engine.registry import AUTO, AUTO_ORDER, DAGGER
    from parapipe.model import ENGINE_CHOICES, OUTPUT_MODES
    from parapipe.reporters.factory import MODES

    parser = build_parser()
    run = parser.parse_args(["run"])
    assert run.engine in ENGINE_CHOICES
    assert set(ENGINE_CHOICES) == {AUTO, DAGGER, *AUTO_ORDER}
    assert OUTPUT_MODES == MODES


@pytest.mark.parametrize("steps", [[], ["unit"]])
def test_hook_run_runs_what_run_would_with_the_push_changes(
    steps: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "ci.yaml"
    spec.write_text(SPEC)
    monkeypatch.setenv("PARAPIPE_ENGINE", "docker")
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", None)  # not run by git: the changes are unknown
    started: list[tuple[RunRequest, Changes | None]] = []

    def run_loaded(pipeline: Pipeline, request: RunRequest, changes: Changes | None) -> int:
        started.append((request, changes))
        return 0

    monkeypatch.setattr("parapipe.cli.hook.run_loaded", run_loaded)
    hook_argv = ["hook", "run", "-f", str(spec)] + (["--steps", ",".join(steps)] if steps else [])
    assert main([*hook_argv, "--", "origin", "url"]) == 0
    ((request, changes),) = started
    # No steps given: those tagged pre-push.
    assert request == parsed("run", "-f", str(spec), "--", *(steps or ["lint"]))
    assert changes is not None
    assert changes.files is None
