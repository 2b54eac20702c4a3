"""Services beside a step, through the Docker and Podman clients.

Each step that names services gets a network of its own (`network create`, labelled with the
run and the step) and its own container of each service on it, reachable by the service's name
(`--network-alias`). So two steps that run at the same time never share a database.

A service's container runs attached to its CLI, whose output goes to the service's log and
whose end says the service exited. It is ready once its `ready.run` exits 0 inside it
(`exec`), asked every `ready.interval`; the step starts only when every service is ready. A
service that exits first, or is not ready within `ready.timeout`, fails the step with one line
(`ServiceFailed`), after the tail of the service's log in the step's.

The services and the network go when the step ends, however it ends (passed, failed, timed
out, cancelled by fail-fast or Ctrl-C); what escapes that carries the run's label, for the
final sweep (`list_run_networks_argv`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from typing import Final

import anyio
from anyio.abc import TaskStatus

from parapipe.engine import process
from parapipe.engine.api import LineSink, ServiceRun, StepRun
from parapipe.engine.docker.argv import (
    container_argv,
    passed_through_cli_env,
    remove_argv,
    valid_name,
)
from parapipe.errors import EngineError, ParapipeError, ServiceFailed
from parapipe.model import LABEL_RUN, LABEL_SERVICE, LABEL_STEP

QUERY_TIMEOUT: Final = 60.0
CLEANUP_TIMEOUT: Final = 30.0
LOG_TAIL: Final = 20  # lines of a failed service's log shown in the step's
RUNNING_CHECK_INTERVAL: Final = 0.1  # for a service without `ready`: until its container runs

# -- command lines (pure) ---------------------------------------------------------------------


def network_name(run_id: str, step: str, attempt: int) -> str:
    """`parapipe-<run_id>-<step>.<attempt>.services`: one network per attempt of a step."""
    return valid_name(f"parapipe-{run_id}-{step}.{attempt}.services")


def service_container_name(run_id: str, step: str, attempt: int, service: str) -> str:
    """`parapipe-<run_id>-<step>.<attempt>.svc-<service>`; a step's own container is
    `parapipe-<run_id>-<step>[.<attempt>]` and step names hold no dot, so the two never meet."""
    return valid_name(f"parapipe-{run_id}-{step}.{attempt}.svc-{service}")


def step_labels(run: StepRun) -> dict[str, str]:
    return {**run.labels, LABEL_RUN: run.run_id, LABEL_STEP: run.step}


def network_create_argv(binary: str, name: str, labels: Mapping[str, str]) -> list[str]:
    argv = [binary, "network", "create"]
    for label, value in labels.items():
        argv += ["--label", f"{label}={value}"]
    return [*argv, name]


def network_remove_argv(binary: str, networks: Sequence[str]) -> list[str]:
    return [binary, "network", "rm", *networks]


def list_run_networks_argv(binary: str, run_id: str) -> list[str]:
    return [binary, "network", "ls", "-q", "--filter", f"label={LABEL_RUN}={run_id}"]


def service_cli_env(service: ServiceRun) -> dict[str, str]:
    """The values `service_run_argv`'s `-e NAME` flags take from the CLI's environment."""
    variables = {**service.env, **service.secrets}
    return {name: value for name, value in variables.items() if passed_through_cli_env(name)}


def service_run_argv(
    binary: str, run: StepRun, service: ServiceRun, name: str, network: str
) -> list[str]:
    """`run` of `service`'s container, attached, on `network` as host `service.name`. Values
    of `service_cli_env(service)` must be in the CLI's environment: none is on this line."""
    for secret in service.secrets:
        if not passed_through_cli_env(secret):
            raise EngineError(
                f"secret {secret!r} of service {service.name!r} cannot be handed over: the"
                f" {binary} client reads a variable of that name itself"
            )
    labels = {**step_labels(run), LABEL_SERVICE: service.name}
    argv = container_argv(binary, "run", name, labels)
    argv += ["--network", network, "--network-alias", service.name, "--hostname", service.name]
    for variable, value in service.env.items():
        if variable not in service.secrets:
            argv += ["-e", variable if passed_through_cli_env(variable) else f"{variable}={value}"]
    for secret in service.secrets:
        argv += ["-e", secret]
    if service.commands:
        # `run` replaces the image's ENTRYPOINT and CMD, as a step's commands do.
        script = "\n".join(service.commands)
        return [*argv, "--entrypoint", "sh", service.image_id, "-ec", script]
    return [*argv, service.image_id]


def ready_argv(binary: str, name: str, command: str) -> list[str]:
    return [binary, "exec", name, "sh", "-c", command]


def kill_argv(binary: str, containers: Sequence[str]) -> list[str]:
    return [binary, "kill", *containers]


def running_argv(binary: str, name: str) -> list[str]:
    return [binary, "container", "inspect", "--format", "{{.State.Running}}", name]


# -- running them -----------------------------------------------------------------------------


class ServiceContainer:
    """One service's container, followed through its attached CLI."""

    def __init__(self, service: ServiceRun, name: str) -> None:
        self.service = service
        self.name = name
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.ended = anyio.Event()
        self.exit_code: int | None = None

    def log(self, line: str) -> None:
        self.tail.append(line)
        self.service.log(line)

    async def follow(
        self,
        program: process.Program,
        argv: list[str],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the attached CLI until the container ends (or this is cancelled)."""
        try:
            env = service_cli_env(self.service)
            async with process.spawn(program, argv, env=env) as attached:
                task_status.started()
                async with anyio.create_task_group() as pumps:
                    pumps.start_soon(process.pump_lines, attached.stdout, self.log)
                    pumps.start_soon(process.pump_lines, attached.stderr, self.log)
                self.exit_code = await attached.wait()
        finally:
            self.ended.set()


async def run_beside_services(
    program: process.Program,
    run: StepRun,
    log: LineSink,
    step: Callable[[str], Awaitable[int]],
) -> int:
    """Start `run.services` on a network of the step's own, wait until each is ready, then run
    `step(network)`; remove them all however it ends."""
    binary = program.binary
    network = network_name(run.run_id, run.step, run.attempt)
    created = await process.query(
        program, network_create_argv(binary, network, step_labels(run)), QUERY_TIMEOUT
    )
    if created.code != 0:
        raise EngineError(
            f"{program.name}: cannot create the network of the services of {run.step!r}:"
            f" {created.problem}"
        )
    containers = [
        ServiceContainer(
            service, service_container_name(run.run_id, run.step, run.attempt, service.name)
        )
        for service in run.services
    ]
    try:
        return await _run_with(program, run, containers, network, log, step)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
            await _remove(program, [c.name for c in containers], network)


async def _run_with(
    program: process.Program,
    run: StepRun,
    containers: list[ServiceContainer],
    network: str,
    log: LineSink,
    step: Callable[[str], Awaitable[int]],
) -> int:
    failure: Exception | None = None
    code = 0
    async with anyio.create_task_group() as followers:
        try:
            for container in containers:
                argv = service_run_argv(
                    program.binary, run, container.service, container.name, network
                )
                await followers.start(container.follow, program, argv)
            started = time.monotonic()
            async with anyio.create_task_group() as checks:
                for container in containers:
                    checks.start_soon(_wait_ready, program, container, log)
            log(
                f"parapipe: {_names(containers)} ready after"
                f" {time.monotonic() - started:.1f}s, on network {network}"
            )
            code = await step(network)
        except* ServiceFailed as group:
            failure = _first(group)
        except* Exception as group:
            # Raised again below, alone: the runner tells the step's failures by their type.
            failure = _first(group)
        finally:
            followers.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return code


def _first(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first exception of `group` that is not a group itself."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _names(containers: Sequence[ServiceContainer]) -> str:
    names = [f"'{c.service.name}'" for c in containers]
    return ("service " if len(names) == 1 else "services ") + ", ".join(names)


async def _wait_ready(program: process.Program, container: ServiceContainer, log: LineSink) -> None:
    """Return once `container`'s service is ready; raise `ServiceFailed` when it exits first or
    is not ready within its timeout."""
    service = container.service
    ready = service.ready
    timeout = ready.timeout if ready is not None else QUERY_TIMEOUT
    if ready is not None:
        argv, interval = ready_argv(program.binary, container.name, ready.run), ready.interval
    else:
        argv, interval = running_argv(program.binary, container.name), RUNNING_CHECK_INTERVAL
    with anyio.move_on_after(timeout):
        while not container.ended.is_set():
            with anyio.move_on_after(max(interval, 5.0)):
                answer = await process.capture(program, argv)
                if answer.code == 0 and (ready is not None or answer.out.strip() == "true"):
                    return
            with anyio.move_on_after(interval):
                await container.ended.wait()
    if container.ended.is_set():
        problem = f"exited with code {container.exit_code} before it was ready"
    else:
        problem = f"was not ready after {timeout:g}s"
    if container.tail:
        log(f"parapipe: the last lines of the log of service '{service.name}':")
        for line in container.tail:
            log(f"  {service.name} | {line}")
    raise ServiceFailed(f"service '{service.name}' {problem}")


async def _remove(program: process.Program, containers: list[str], network: str) -> None:
    with suppress(ParapipeError):
        # Killed first: Podman's `rm -f` stops a container with SIGTERM and waits 10 s for it,
        # and a service's first process (a shell, a server) may ignore SIGTERM as PID 1.
        await process.capture(program, kill_argv(program.binary, containers))
        await process.capture(program, remove_argv(program.binary, containers))
    with suppress(ParapipeError):
        await process.capture(program, network_remove_argv(program.binary, [network]))


async def remove_run_networks(program: process.Program, run_id: str) -> None:
    """The final sweep's part: every network labelled with `run_id` (its containers are gone)."""
    listed = await process.query(
        program, list_run_networks_argv(program.binary, run_id), QUERY_TIMEOUT
    )
    if listed.code != 0:
        raise EngineError(f"{program.name}: cannot list the run's networks: {listed.problem}")
    networks = listed.out.split()
    if networks:
        removed = await process.query(
            program, network_remove_argv(program.binary, networks), QUERY_TIMEOUT
        )
        if removed.code != 0:
            raise EngineError(
                f"{program.name}: cannot remove the run's networks: {removed.problem}"
            )
