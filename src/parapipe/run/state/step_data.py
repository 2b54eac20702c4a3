"""A run's step outputs (`.parapipe/runs/<id>/artifacts/<step>/`, laid out like the workdir)
and their place in the step cache: what a step receives, under which key it is cached, and how
a cached step's log and outputs come back."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from parapipe.model import ImagePlan, Pipeline, Step
from parapipe.run.state.step_cache import CacheEntry, StepCache, step_key


class StepData:
    def __init__(self, pipeline: Pipeline, run_dir: Path, *, read_cache: bool) -> None:
        self.pipeline = pipeline
        self.artifacts = run_dir / "artifacts"
        self.cache = StepCache(pipeline.state_dir)
        # `--no-cache` runs every step but still records what passed, refreshing the entries.
        self.read_cache = read_cache

    def outputs_dir(self, step: str) -> Path:
        return self.artifacts / step

    def received(self, step: Step) -> dict[str, Path]:
        """The outputs of the step's needs, by need, as they were handed on in this run."""
        return {
            need: self.outputs_dir(need)
            for need in step.needs
            if self.pipeline.steps[need].outputs and self.outputs_dir(need).exists()
        }

    def key(
        self,
        step: Step,
        plan: ImagePlan,
        secret_fingerprints: Mapping[str, str],
        *,
        services: Sequence[object] = (),
    ) -> str:
        return step_key(
            step=step,
            plan=plan,
            workdir=self.pipeline.image.workdir,
            secret_fingerprints=secret_fingerprints,
            received=self.received(step),
            services=services,
        )

    def cached(self, step: Step, key: str) -> CacheEntry | None:
        if not self.read_cache or not step.cache:
            return None
        return self.cache.find(key)

    def latest(self, step: Step) -> CacheEntry | None:
        """The newest entry of `step` under any key, for a step that `when` left out."""
        if not self.read_cache:
            return None
        return self.cache.latest(self.pipeline.name, step.name)

    def restore(self, step: Step, entry: CacheEntry, log_path: Path) -> None:
        shutil.copyfile(entry.log, log_path)
        if entry.outputs.exists():
            shutil.copytree(entry.outputs, self.outputs_dir(step.name), symlinks=True)

    def remember(self, step: Step, key: str, duration: float, log_path: Path) -> None:
        if not step.cache:
            return
        outputs = self.outputs_dir(step.name) if step.outputs else None
        self.cache.store(key, self.pipeline.name, step.name, duration, log_path, outputs)

    def take_in(self, need: str, outputs: Path) -> None:
        """Hand on `outputs` as those of `need`, which this run leaves out (`left_out_needs`)."""
        shutil.copytree(outputs, self.outputs_dir(need), symlinks=True)

    def export(self, names: Iterable[str], destination: Path) -> list[str]:
        """Copy the outputs of `names` to `destination`, each at its own path."""
        exported = []
        for name in names:
            folder = self.outputs_dir(name)
            if folder.exists():
                shutil.copytree(folder, destination, symlinks=True, dirs_exist_ok=True)
                exported.append(name)
        return exported
