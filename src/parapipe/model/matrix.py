"""A matrix step's instances: one step per combination of its matrix's values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from parapipe.errors import Location


@dataclass(frozen=True, kw_only=True)
class MatrixSpec:
    """`steps.<name>.matrix` as written (values as strings), kept for `export github --split`."""

    axes: Mapping[str, tuple[str, ...]]  # in the declared order
    include: tuple[Mapping[str, str], ...] = ()
    exclude: tuple[Mapping[str, str], ...] = ()
    location: Location  # of the `matrix` key


@dataclass(frozen=True, kw_only=True)
class MatrixInstance:
    """Which combination of which matrix step a step is."""

    step: str  # the matrix step's name as written: `test`
    values: Mapping[str, str]  # the declared keys first, then those `include` adds
    spec: MatrixSpec

    @property
    def label(self) -> str:
        """`SHARD=0,PY=3.11`: inside the brackets of the instance's name, and the folder its
        outputs are handed on in (`test/SHARD=0,PY=3.11/`)."""
        return ",".join(f"{key}={value}" for key, value in self.values.items())


def instance_name(step: str, values: Mapping[str, str]) -> str:
    """`test[SHARD=0,PY=3.11]`."""
    return f"{step}[{','.join(f'{key}={value}' for key, value in values.items())}]"


def handoff_folder(instance: MatrixInstance | None) -> str:
    """Where a step's outputs land in a dependent's workdir, relative to it: at their own paths
    (`''`) for a plain step; under `test/SHARD=0,PY=3.11/` for an instance of `test`, so that
    the instances of one matrix never hand on the same path."""
    return "" if instance is None else f"{instance.step}/{instance.label}"


def split_instance(name: str) -> tuple[str, str] | None:
    """`('test', 'SHARD=0,PY=3.11')` for the name of an instance; None for a plain step, whose
    name never holds '['. Reporters group the instances under their step with it."""
    step, bracket, rest = name.partition("[")
    if not bracket or not rest.endswith("]"):
        return None
    return step, rest[:-1]


def label_values(label: str) -> dict[str, str]:
    """`{'SHARD': '0', 'PY': '3.11'}` from `SHARD=0,PY=3.11` (values never hold ',' or '=')."""
    pairs = (pair.partition("=") for pair in label.split(",")) if label else ()
    return {key: value for key, _, value in pairs}
