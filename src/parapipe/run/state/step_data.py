"""A run's step outputs (`.parapipe/runs/<id>/artifacts/<step>/`, laid out like the workdir)
and their place in the step cache: what a step receives, under which key it is cached, and how
a cached step's log and outputs come back."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from parapipe.model import ImagePlan, Pipeline, Step, handoff_folder
from parapipe.run.state.step_cache import CacheEntry, StepCache, step_key
from parapipe.spec.handoff import first_overlap, overlaps


class StepData:
    def __init__(self, pipeline: Pipeline, run_dir: Path, *, read_cache: bool) -> None:
        self.pipeline = pipeline
        self.artifacts = run_dir / "artifacts"
        self.nested = run_dir / "handoff"  # matrix instances' outputs, under their folder
        self.cache = StepCache(pipeline.state_dir)
        # `--no-cache` runs every step but still records what passed, refreshing the entries.
        self.read_cache = read_cache

    def outputs_dir(self, step: str) -> Path:
        return self.artifacts / step

    def received(self, step: Step) -> dict[str, Path]:
        """The outputs of the step's needs, by need, as they were handed on in this run."""
        return {
            need: self._handed_on(need)
            for need in step.needs
            if self.pipeline.steps[need].outputs and self.outputs_dir(need).exists()
        }

    def _handed_on(self, need: str) -> Path:
        """The outputs of `need` laid out as they land in a dependent's workdir: at their own
        paths, or for a matrix instance under `<step>/<values>/`."""
        folder = handoff_folder(self.pipeline.steps[need].matrix)
        if not folder:
            return self.outputs_dir(need)
        nested = self.nested / need
        if not nested.exists():
            staging = self.nested / f".{need}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(self.outputs_dir(need), staging / folder, symlinks=True)
            staging.rename(nested)
        return nested

    def collision(self, step: Step) -> str | None:
        """Why `step` cannot start when two of its needs hand on the same file (or a file where
        the other has a folder), which the spec could not show; else None."""
        received = self.received(step)
        overlap = first_overlap(
            (path, need) for need, folder in received.items() for path in _leaves(folder)
        )
        if overlap is None:
            return None
        first, first_path, second, second_path = overlap
        where = (
            f"'{first_path}'"
            if first_path == second_path
            else f"'{first_path}' and '{second_path}' inside it"
        )
        return (
            f"needs {first!r} and {second!r} both hand on {where}: one would overwrite the"
            " other, so the step does not start"
        )

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
        """Copy the outputs of `names` to `destination`, each at the path a dependent would
        get it at. Steps whose outputs overlap another's go under `destination/<step>/`
        instead, so that none overwrites another."""
        folders = {name: self._handed_on(name) for name in names if self.outputs_dir(name).exists()}
        apart: set[str] = set()
        pairs = overlaps(
            (path, name) for name, folder in folders.items() for path in _leaves(folder)
        )
        for first, _, second, _ in pairs:
            apart.update((first, second))
        for name, folder in folders.items():
            target = destination / name if name in apart else destination
            shutil.copytree(folder, target, symlinks=True, dirs_exist_ok=True)
        return list(folders)


def _leaves(folder: Path) -> list[str]:
    """The files, links and empty folders under `folder`, relative to it."""
    leaves: list[str] = []
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_dir() or not any(path.iterdir()):
            leaves.append(path.relative_to(folder).as_posix())
    return leaves
