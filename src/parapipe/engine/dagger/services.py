"""Services beside a step on Dagger: each a `Container.as_service()`, bound to the step's
container with `with_service_binding(name, service)`, so the step reaches it by its name.

Dagger starts a service per binding within the session and never shares it with another step's
binding of a service built from other inputs; each step attempt's service carries the attempt
in its env, so two steps (or two attempts) never share one.

Dagger cannot run a command inside a running service, so `ready.run` runs in a probe container
of the service's image that is bound to the service under its name: write it against the host
name (`pg_isready -h db`), which works on every engine, rather than against 127.0.0.1. A
service's output stays in Dagger's own log (`dagger.log` in the run's folder).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

import anyio
import dagger

from parapipe.engine.api import LineSink, ServiceRun, StepRun
from parapipe.engine.dagger.probe import one_line
from parapipe.errors import EngineError, ServiceFailed

STOP_TIMEOUT: Final = 30.0
START_TIMEOUT: Final = 600.0  # an image Dagger pulls first may take long: `ready` times the rest

BoundService = tuple[str, dagger.Service]


async def image_id(client: dagger.Client, ref: str) -> str:
    """The id of `ref` for a service: Dagger's engine has images of its own (the Docker
    daemon's are not there), so it pulls `ref`, once per session."""
    try:
        return await client.container().from_(ref).id()
    except dagger.DaggerError as exc:
        raise EngineError(f"dagger: {one_line(str(exc))}") from exc


def service_container(client: dagger.Client, run: StepRun, service: ServiceRun) -> dagger.Service:
    """`service` as a Dagger service, unique to this step attempt."""
    container = client.load_container_from_id(dagger.ContainerID(service.image_id))
    for name, value in service.env.items():
        container = container.with_env_variable(name, value)
    for name, value in service.secrets.items():
        container = container.with_secret_variable(name, client.set_secret(name, value))
    # Inputs Dagger cannot share with another step's or attempt's service of the same spec.
    container = container.with_env_variable("PARAPIPE_RUN_ID", run.run_id)
    container = container.with_env_variable("PARAPIPE_STEP", run.step)
    container = container.with_env_variable("PARAPIPE_ATTEMPT", str(run.attempt))
    if service.commands:
        # As on Docker: `run` replaces the image's ENTRYPOINT and CMD.
        return container.as_service(args=["sh", "-ec", "\n".join(service.commands)])
    return container.as_service(use_entrypoint=True)


def bind(container: dagger.Container, services: Sequence[BoundService]) -> dagger.Container:
    for name, service in services:
        container = container.with_service_binding(name, service)
    return container


@asynccontextmanager
async def running(
    client: dagger.Client, run: StepRun, log: LineSink
) -> AsyncIterator[list[BoundService]]:
    """Start `run.services`, wait until each is ready, and stop them all however this ends."""
    started: list[BoundService] = []
    if not run.services:
        yield started
        return
    try:
        for service_run in run.services:
            service = service_container(client, run, service_run)
            try:
                with anyio.fail_after(START_TIMEOUT):
                    await service.start()
            except TimeoutError:
                raise ServiceFailed(
                    f"service '{service_run.name}' did not start within {START_TIMEOUT:g}s"
                ) from None
            except dagger.DaggerError as exc:
                raise ServiceFailed(
                    f"service '{service_run.name}' could not start: {one_line(str(exc))}"
                ) from exc
            started.append((service_run.name, service))
        async with anyio.create_task_group() as checks:
            for service_run, (_, service) in zip(run.services, started, strict=True):
                checks.start_soon(_wait_ready, client, service_run, service)
        log(f"parapipe: services {', '.join(repr(s.name) for s in run.services)} ready")
        yield started
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_TIMEOUT):
            for _, service in started:
                try:
                    await service.stop(kill=True)
                except dagger.DaggerError as exc:
                    log(f"parapipe: stopping a service failed: {one_line(str(exc))}")


async def _wait_ready(
    client: dagger.Client, service_run: ServiceRun, service: dagger.Service
) -> None:
    ready = service_run.ready
    if ready is None:
        return
    probe = bind(
        client.load_container_from_id(dagger.ContainerID(service_run.image_id)),
        [(service_run.name, service)],
    )
    attempt = 0
    with anyio.move_on_after(ready.timeout):
        while True:
            attempt += 1
            # A new input each time: Dagger would otherwise replay the first answer.
            check = probe.with_env_variable("PARAPIPE_READY_CHECK", str(attempt)).with_exec(
                ["sh", "-c", ready.run], expect=dagger.ReturnType.ANY
            )
            try:
                if await check.exit_code() == 0:
                    return
            except dagger.ExecError:
                pass  # a signal's code: not ready yet
            except dagger.DaggerError as exc:
                raise EngineError(f"dagger: {one_line(str(exc))}") from exc
            await anyio.sleep(ready.interval)
    raise ServiceFailed(f"service '{service_run.name}' was not ready after {ready.timeout:g}s")
