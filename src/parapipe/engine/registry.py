"""Choosing the container engine: the one asked for, or the first that answers.

`auto` takes Dagger when it is already at hand (a session opened by `dagger run`, or a `dagger`
CLI on PATH whose engine answers the probe), else the first of Docker and Podman that answers.
Dagger's module imports the SDK (about 0.9 s), so it is only imported once Dagger is chosen.
"""

from __future__ import annotations

from typing import Final

from parapipe.engine.api import Engine
from parapipe.engine.dagger import probe as dagger_probe
from parapipe.engine.dagger.probe import DaggerTarget
from parapipe.engine.docker.engine import DockerEngine, PodmanEngine
from parapipe.errors import EngineUnavailable, UsageError
from parapipe.model import ENGINE_CHOICES

ENGINES: Final[dict[str, type[Engine]]] = {
    DockerEngine.name: DockerEngine,
    PodmanEngine.name: PodmanEngine,
}
AUTO: Final = "auto"
DAGGER: Final = "dagger"
AUTO_ORDER: Final = ("docker", "podman")  # tried in this order by `auto`, after Dagger
FIRST_ANSWERED: Final = "the first engine that answered"


async def choose_engine(name: str) -> tuple[Engine, str]:
    """The engine called `name` (`auto`, `docker`, `podman`, `dagger`), checked to answer, and
    why it was chosen. Raises `EngineUnavailable` when it (or, for `auto`, every engine) does not
    answer."""
    if name == AUTO:
        return await _first_answering()
    if name == DAGGER:
        engine = dagger_engine(None)
        await engine.check()
        return engine, f"--engine {name}"
    engine_class = ENGINES.get(name)
    if engine_class is None:
        raise UsageError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_CHOICES)}")
    engine = engine_class()
    await engine.check()
    return engine, f"--engine {name}"


def dagger_engine(target: DaggerTarget | None, *, checked: bool = False) -> Engine:
    """The Dagger engine, importing the SDK now and not before."""
    if not dagger_probe.sdk_installed():
        fallback = target or DaggerTarget(session=False, cli=None, why="")
        raise EngineUnavailable(dagger_probe.failure_message("sdk-missing", "", fallback))
    from parapipe.engine.dagger.engine import DaggerEngine

    return DaggerEngine(target, checked=checked)


async def _first_answering() -> tuple[Engine, str]:
    failures: list[str] = []
    target = dagger_probe.find_target(download=False)
    if target is not None:
        try:
            version = await dagger_probe.probe(target)
        except EngineUnavailable as exc:
            failures.append(str(exc))
        else:
            return dagger_engine(target, checked=True), f"{target.why}; engine {version} answered"
    for candidate in AUTO_ORDER:
        engine = ENGINES[candidate]()
        try:
            await engine.check()
        except EngineUnavailable as exc:
            failures.append(str(exc))
            continue
        # Say why the engines tried before it were not taken.
        return engine, "; ".join([FIRST_ANSWERED, *failures])
    raise EngineUnavailable("no container engine answered: " + " | ".join(failures))
