"""What a run tells its reporters as it starts, and its forecast for the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    run_id: str
    pipeline: str
    spec_path: Path
    engine: str
    engine_reason: str  # why this engine was chosen, e.g. "docker answered first"
    engine_address: str | None = None  # where it is, unless at its client's default
    steps: Sequence[str]  # the steps this run will run, in a topological order
    needs: dict[str, tuple[str, ...]]  # of those steps
    jobs: int
    run_dir: Path

    @property
    def engine_at(self) -> str:
        """The engine, and where it is when that is not its client's default:
        `docker at tcp://10.0.0.5:2376`."""
        return f"{self.engine} at {self.engine_address}" if self.engine_address else self.engine


@dataclass(frozen=True, kw_only=True)
class Prewarm:
    """The runner's forecast, for an engine that can start step containers ahead of the steps
    (those of `run_id`: image, workdir, labels): `soon` steps may start soon, and `limit` steps,
    those included, will still take a container. Holding ready as many as start soon, but at
    most `jobs`, hides their start; holding more than `limit` would waste some. The steps that
    have outputs are counted apart, as an engine may need another kind of container for them."""

    run_id: str
    image_id: str
    workdir: str
    labels: Mapping[str, str]
    jobs: int
    soon: int = 0
    limit: int = 0
    soon_with_outputs: int = 0
    limit_with_outputs: int = 0
