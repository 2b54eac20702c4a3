"""`parapipe validate` and `parapipe graph`: load the spec and say what it holds."""

from __future__ import annotations

import sys

from parapipe.cli.requests import GraphRequest, ValidateRequest
from parapipe.errors import ExitCode


def validate_command(request: ValidateRequest) -> int:
    from parapipe.spec.load import load_pipeline

    pipeline = load_pipeline(request.spec)
    count = len(pipeline.steps)
    print(f"{request.spec}: valid, {count} step{'s' if count != 1 else ''}")
    return ExitCode.OK


def graph_command(request: GraphRequest) -> int:
    from parapipe.graph import render, select_steps
    from parapipe.spec.load import load_pipeline

    pipeline = load_pipeline(request.spec)
    sys.stdout.write(render(pipeline, select_steps(pipeline, request.steps), request.format))
    return ExitCode.OK
