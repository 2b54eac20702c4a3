"""Choosing the container engine: the one asked for, or the first that answers."""

from __future__ import annotations

from typing import Final

from parapipe.engines.base import Engine
from parapipe.engines.docker import DockerEngine, PodmanEngine
from parapipe.errors import EngineUnavailable, UsageError

ENGINES: Final[dict[str, type[Engine]]] = {
    DockerEngine.name: DockerEngine,
    PodmanEngine.name: PodmanEngine,
}
AUTO: Final = "auto"
AUTO_ORDER: Final = ("docker", "podman")  # tried in this order by `auto`
ENGINE_CHOICES: Final = (AUTO, *ENGINES)


async def choose_engine(name: str) -> tuple[Engine, str]:
    """The engine called `name` (`auto`, `docker`, `podman`), checked to answer, and why it was
    chosen. Raises `EngineUnavailable` when it (or, for `auto`, every engine) does not answer."""
    if name == AUTO:
        failures: list[str] = []
        for candidate in AUTO_ORDER:
            engine = ENGINES[candidate]()
            try:
                await engine.check()
            except EngineUnavailable as exc:
                failures.append(str(exc))
                continue
            return engine, "the first engine that answered"
        raise EngineUnavailable("no container engine answered: " + " | ".join(failures))
    engine_class = ENGINES.get(name)
    if engine_class is None:
        raise UsageError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_CHOICES)}")
    engine = engine_class()
    await engine.check()
    return engine, f"--engine {name}"
