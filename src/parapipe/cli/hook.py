"""`parapipe hook install|uninstall|run`: the git pre-push hook, and what it runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from parapipe.cli.requests import (
    HookInstallRequest,
    HookRunRequest,
    HookUninstallRequest,
    RunRequest,
)
from parapipe.cli.run import run_loaded
from parapipe.errors import ExitCode

if TYPE_CHECKING:
    from parapipe.model import Pipeline


def hook_install_command(request: HookInstallRequest) -> int:
    from parapipe.git.hooks import install_hook

    pipeline = _load_checked(request.spec, request.steps)
    print(install_hook(pipeline, request.steps, force=request.force))
    return ExitCode.OK


def hook_uninstall_command(request: HookUninstallRequest) -> int:
    from parapipe.git.hooks import uninstall_hook

    print(uninstall_hook(request.folder))
    return ExitCode.OK


def hook_run_command(request: HookRunRequest) -> int:
    from parapipe.git.hooks import hook_changes, hook_steps

    pipeline = _load_checked(request.spec, request.steps)
    ranges = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    changes = hook_changes(pipeline, ranges, request.remote, os.environ)
    if changes.nothing_pushed:
        print(f"parapipe: pre-push: {changes.note}: nothing to check", file=sys.stderr)
        return ExitCode.OK
    # Exactly what `parapipe run -f SPEC STEP...` would do, with the push's changes.
    run = RunRequest(spec=request.spec, steps=hook_steps(pipeline, request.steps))
    return run_loaded(pipeline, run, changes)


def _load_checked(spec: Path, steps: tuple[str, ...]) -> Pipeline:
    from parapipe.graph import select_steps
    from parapipe.spec.load import load_pipeline

    pipeline = load_pipeline(spec)
    select_steps(pipeline, steps)  # an unknown step is a usage error now, not at push time
    return pipeline
