"""`StepRun`s for the engine tests, with defaults for whatever a test does not care about."""

from __future__ import annotations

from typing import Any

from parapipe.engine.api import StepRun

DEFAULTS: dict[str, Any] = {
    "run_id": "run-1",
    "step": "step",
    "image_id": "sha256:abc",
    "commands": ("true",),
    "env": {},
    "workdir": "/src",
    "labels": {},
}


def make_step_run(**fields: Any) -> StepRun:
    """A StepRun with `fields` (any of its fields) in place of the defaults."""
    return StepRun(**{**DEFAULTS, **fields})
