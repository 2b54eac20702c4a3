"""The keys each part of a spec (version 1) may hold, and those kept for later versions."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from parapipe.spec.data import DATA_KEYS
from parapipe.spec.execution import EXECUTION_KEYS

PIPELINE_KEYS: Final = ("name", "defaults", "image", "services", "steps")
IMAGE_KEYS: Final = (
    "from",
    "build",
    "source",
    "exclude",
    "workdir",
    "env",
    "prepare",
    "setup",
    "caches",
    "host_ca",
    "keep",
)
PREPARE_KEYS: Final = ("files", "run", "env")
BUILD_KEYS: Final = ("context", "dockerfile", "args")
STEP_KEYS: Final = (
    "run",
    "needs",
    "env",
    "tags",
    "when",
    "services",
    *EXECUTION_KEYS,
    *DATA_KEYS,
    "matrix",
)

# Keys that later versions of parapipe add. They get their own message instead of "unknown key"
# (and are never silently ignored); the feature that implements one moves it out of here.
NOT_SUPPORTED_YET: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "pipeline": frozenset(),
        "defaults": frozenset(),
        "image": frozenset(),
        "build": frozenset(),
        "prepare": frozenset(),
        "step": frozenset(),
    }
)
