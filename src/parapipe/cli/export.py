"""`parapipe export github`: print a GitHub Actions workflow that runs the pipeline."""

from __future__ import annotations

import sys

from parapipe.cli.requests import ExportGithubRequest
from parapipe.errors import ExitCode


def export_github_command(request: ExportGithubRequest) -> int:
    from parapipe.git.github_export import github_workflow
    from parapipe.spec.load import load_pipeline

    pipeline = load_pipeline(request.spec)
    sys.stdout.write(github_workflow(pipeline, split=request.split, install=request.install))
    return ExitCode.OK
