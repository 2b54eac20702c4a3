"""How long each step took in earlier runs: for critical-path scheduling and the ETA.

Kept in `.parapipe/durations.json` as the last few durations of every step that passed, per
pipeline. Written atomically, so two runs at once never leave a torn file (the later one wins).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path

from parapipe.model import Status, StepResult
from parapipe.run.state.atomic import write_text_atomically

DURATIONS_FILE = "durations.json"
KEPT_SAMPLES = 5


def load_durations(state_dir: Path, pipeline: str) -> dict[str, float]:
    """The median of the kept durations of each step of `pipeline` that passed before."""
    samples = _load(state_dir).get(pipeline, {})
    return {step: statistics.median(values) for step, values in samples.items() if values}


def record_durations(state_dir: Path, pipeline: str, results: Mapping[str, StepResult]) -> None:
    every = _load(state_dir)
    samples = every.setdefault(pipeline, {})
    for result in results.values():
        if result.status is Status.PASSED and result.duration is not None:
            kept = samples.setdefault(result.name, [])
            kept.append(round(result.duration, 3))
            del kept[:-KEPT_SAMPLES]
    write_text_atomically(state_dir / DURATIONS_FILE, json.dumps(every, indent=1, sort_keys=True))


def _load(state_dir: Path) -> dict[str, dict[str, list[float]]]:
    try:
        data = json.loads((state_dir / DURATIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no history yet, or a file we cannot use: plan without it
    if not isinstance(data, dict):
        return {}
    return {
        pipeline: {
            step: [float(v) for v in values if isinstance(v, int | float)]
            for step, values in steps.items()
            if isinstance(values, list)
        }
        for pipeline, steps in data.items()
        if isinstance(steps, dict)
    }
