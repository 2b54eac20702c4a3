"""`parapipe export github`: print a GitHub Actions workflow that runs the pipeline."""

from __future__ import annotations

import sys

from parapipe.cli.requests import ExportGithubRequest
from parapipe.errors import ExitCode, UsageError


def export_github_command(request: ExportGithubRequest) -> int:
    from parapipe.git.github_export import github_workflow
    from parapipe.git.github_split import split_workflow
    from parapipe.spec.load import load_pipeline

    pipeline = load_pipeline(request.spec)
    if request.registry and not request.split:
        raise UsageError("--registry goes with --split: it is where the image job puts the image")
    if request.split:
        text = split_workflow(pipeline, install=request.install, registry=request.registry)
    else:
        text = github_workflow(pipeline, install=request.install)
    sys.stdout.write(text)
    return ExitCode.OK
