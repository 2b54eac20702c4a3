"""`services`: containers beside a step (a database), each step that names one getting its own
instance on a network private to that step."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from parapipe.errors import Location

DEFAULT_READY_TIMEOUT: Final = 60.0  # seconds
DEFAULT_READY_INTERVAL: Final = 0.5  # seconds between two checks


@dataclass(frozen=True, kw_only=True)
class Readiness:
    """`ready`: the service is ready once `run` exits 0 inside its container."""

    run: str
    timeout: float = DEFAULT_READY_TIMEOUT
    interval: float = DEFAULT_READY_INTERVAL


@dataclass(frozen=True, kw_only=True)
class Service:
    name: str  # also its hostname on the step's network: an RFC 1123 label
    image: str | None  # a local image; None: the pipeline image
    run: tuple[str, ...]  # run in order by `sh -ec`; empty: the image's own command
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # names of host secrets put in its environment
    ready: Readiness | None = None  # None: ready as soon as it started
    location: Location  # of the service's name in `services`
