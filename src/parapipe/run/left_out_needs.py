"""Where the outputs of needs that a run leaves out (`--no-deps`) come from.

A step receives its needs' outputs. When the run leaves a need out (`parapipe run STEP
--no-deps`, which is what each job of `parapipe export github --split` runs), those outputs
come, in this order, from:

1. the hand-off of a split workflow: the job of the need uploads its `.parapipe/runs/`, and the
   dependent job downloads it into `.parapipe/handoff/<need>/` (`github_export.HANDOFF`); the
   newest run found there that kept the need's outputs;
2. the step cache: the outputs of the newest passed run of the need on this machine.

A need with `outputs` found in neither is a usage error, reported before any container starts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from parapipe.errors import UsageError
from parapipe.model import Pipeline
from parapipe.run.state.step_cache import StepCache

HANDOFF = "handoff"  # under the pipeline's state dir: `.parapipe/handoff/<need>/`


@dataclass(frozen=True, kw_only=True)
class BroughtIn:
    need: str
    outputs: Path  # a folder laid out like the workdir
    origin: str  # where it came from, for the dependents' logs


def find_left_out_outputs(pipeline: Pipeline, names: Collection[str]) -> dict[str, BroughtIn]:
    """For every need of `names` outside `names` that has outputs, where they come from."""
    found: dict[str, BroughtIn] = {}
    cache = StepCache(pipeline.state_dir)
    for name in names:
        step = pipeline.steps[name]
        for need in step.needs:
            if need in names or need in found or not pipeline.steps[need].outputs:
                continue
            brought = _from_handoff(pipeline, need) or _from_cache(cache, pipeline.name, need)
            if brought is None:
                raise UsageError(
                    f"{step.location}: step {name!r} needs the outputs of {need!r}, which this"
                    f" run leaves out (--no-deps), and neither a hand-off"
                    f" (.parapipe/{HANDOFF}/{need}/) nor an earlier run of {need!r}"
                    " has them: run it first, or without --no-deps"
                )
            found[need] = brought
    return found


def _from_handoff(pipeline: Pipeline, need: str) -> BroughtIn | None:
    handoff = pipeline.state_dir / HANDOFF / need
    # The job's `<run id>/artifacts/<need>/`, wherever the artifact's root put it; run ids
    # sort by time.
    candidates = [path for path in handoff.glob(f"**/artifacts/{need}") if path.is_dir()]
    if not candidates:
        return None
    outputs = max(candidates, key=lambda path: path.parent.parent.name)
    return BroughtIn(need=need, outputs=outputs, origin=f"the hand-off in {outputs}")


def _from_cache(cache: StepCache, pipeline: str, need: str) -> BroughtIn | None:
    entry = cache.latest(pipeline, need)
    if entry is None or not entry.outputs.is_dir():
        return None
    return BroughtIn(
        need=need,
        outputs=entry.outputs,
        origin=f"the step cache (its run of {entry.duration:.1f}s, key {entry.key[:12]})",
    )
