"""Services beside a step, through the Docker and Podman clients.

Each step that names services gets a network of its own (`network create`, labelled with the
run and the step) and its own container of each service on it, reachable by the service's name
(`--network-alias`). So two steps that run at the same time never share a database.

A service's container runs attached to its CLI, whose output goes to the service's log and
whose end says the service exited. It is ready once its `ready.run` exits 0 inside it
(`exec`), asked every `ready.interval`; the step starts only when every service is ready. A
service that exits first, or is not ready within `ready.timeout`, fails the step with one line
(`ServiceFailed`), after the tail of the service's log in the step's.

A service's secrets reach it as a step's do, on stdin (`loader.SERVICE_SECRETS_LOADER`), never
in its container's config: the loader reads them all, then `exec`s the service's command. Its
readiness check gets them the same way.

The services and the network go when the step ends, however it ends (passed, failed, timed
out, cancelled by fail-fast or Ctrl-C); what escapes that carries the run's label, for the
final sweep (`list_run_networks_argv`).

A debug shell (`ShellRun`: `run -i`, `parapipe shell`) gets fresh instances the same way, on a
network of its own (`<step>.shell`), told to the user a line per service as each is ready.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from typing import Final

import anyio
from anyio.abc import ByteSendStream, TaskStatus

from parapipe.engine import process
from parapipe.engine.api import LineSink, ServiceRun, ShellRun, StepRun
from parapipe.engine.docker import images, loader
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

# Whose services they are: one attempt of a step, or a debug shell in the step's setting.
Owner = StepRun | ShellRun

# -- command lines (pure) ---------------------------------------------------------------------


def network_name(run_id: str, step: str, attempt: int | str) -> str:
    """`parapipe-<run_id>-<step>.<attempt>.services`: one network per attempt of a step (and
    `<step>.shell.services` for its debug shell)."""
    return valid_name(f"parapipe-{run_id}-{step}.{attempt}.services")


def service_container_name(run_id: str, step: str, attempt: int | str, service: str) -> str:
    """`parapipe-<run_id>-<step>.<attempt>.svc-<service>`; a step's own container is
    `parapipe-<run_id>-<step>[.<attempt>]` and step names hold no dot, so the two never meet."""
    return valid_name(f"parapipe-{run_id}-{step}.{attempt}.svc-{service}")


def step_labels(run: Owner) -> dict[str, str]:
    return {**run.labels, LABEL_RUN: run.run_id, LABEL_STEP: run.step}


def instance(run: Owner) -> int | str:
    """What tells the networks of one step apart: its attempt, or `shell`."""
    return run.attempt if isinstance(run, StepRun) else "shell"


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
    """The values `service_run_argv`'s `-e NAME` flags take from the CLI's environment (its
    secrets are not among them: they come on stdin)."""
    return {
        name: value
        for name, value in service.env.items()
        if name not in service.secrets and passed_through_cli_env(name)
    }


def service_run_argv(
    binary: str,
    run: Owner,
    service: ServiceRun,
    name: str,
    network: str,
    *,
    nonce: str = "",
    image_command: Sequence[str] = (),
) -> list[str]:
    """`run` of `service`'s container, attached, on `network` as host `service.name`. Values
    of `service_cli_env(service)` must be in the CLI's environment: none is on this line.

    A service with secrets reads them on stdin, as a step does (`loader.service_secrets_argv`,
    with `nonce`), then `exec`s its command: its `run` under `sh -ec`, or `image_command`, the
    image's ENTRYPOINT and CMD, which `--entrypoint sh` replaces."""
    if service.secrets and not (nonce and (service.commands or image_command)):
        raise ValueError("a service with secrets needs a nonce and its command")
    labels = {**step_labels(run), LABEL_SERVICE: service.name}
    argv = container_argv(binary, "run", name, labels, interactive=bool(service.secrets))
    argv += ["--network", network, "--network-alias", service.name, "--hostname", service.name]
    for variable, value in service.env.items():
        if variable not in service.secrets:
            argv += ["-e", variable if passed_through_cli_env(variable) else f"{variable}={value}"]
    # `run` replaces the image's ENTRYPOINT and CMD, as a step's commands do.
    commands = ["sh", "-ec", "\n".join(service.commands)] if service.commands else []
    if service.secrets:
        loading = loader.service_secrets_argv(nonce, commands or image_command)
        return [*argv, "--entrypoint", "sh", service.image_id, *loading]
    if commands:
        return [*argv, "--entrypoint", "sh", service.image_id, *commands[1:]]
    return [*argv, service.image_id]


def ready_argv(binary: str, name: str, command: str, *, nonce: str = "") -> list[str]:
    """`exec` of a service's `ready.run`; given the `nonce` of its secrets' script, a loader
    reads that on stdin first, so the check sees the secrets as the service does."""
    if nonce:
        loading = loader.service_secrets_argv(nonce, ["sh", "-c", command])
        return [binary, "exec", "-i", name, "sh", *loading]
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
        # Its secrets' loader's nonce and script, when it has secrets: `_start_line` sets them.
        self.nonce = ""
        self.script: bytes | None = None

    def log(self, line: str) -> None:
        self.tail.append(line)
        self.service.log(line)

    async def follow(
        self,
        program: process.Program,
        argv: list[str],
        script: bytes | None = None,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the attached CLI until the container ends (or this is cancelled), with `script`
        (the secrets' loader's) on its stdin, if any."""
        try:
            env = service_cli_env(self.service)
            stdin = subprocess.PIPE if script is not None else subprocess.DEVNULL
            async with process.spawn(program, argv, env=env, stdin=stdin) as attached:
                task_status.started()
                async with anyio.create_task_group() as pumps:
                    if script is not None and attached.stdin is not None:
                        pumps.start_soon(_send, attached.stdin, script)
                    pumps.start_soon(process.pump_lines, attached.stdout, self.log)
                    pumps.start_soon(process.pump_lines, attached.stderr, self.log)
                self.exit_code = await attached.wait()
        finally:
            self.ended.set()


async def run_beside_services(
    program: process.Program,
    run: Owner,
    log: LineSink,
    step: Callable[[str], Awaitable[int]],
) -> int:
    """Start `run.services` on a network of the step's (or its shell's) own, wait until each
    is ready, then run `step(network)`; remove them all however it ends."""
    binary = program.binary
    network = network_name(run.run_id, run.step, instance(run))
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
            service, service_container_name(run.run_id, run.step, instance(run), service.name)
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
    run: Owner,
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
                argv = await _start_line(program, run, container, network)
                await followers.start(container.follow, program, argv, container.script)
            started = time.monotonic()
            async with anyio.create_task_group() as checks:
                for container in containers:
                    if isinstance(run, ShellRun):
                        checks.start_soon(_say_when_ready, program, container, log, started)
                    else:
                        checks.start_soon(_wait_ready, program, container, log)
            if isinstance(run, StepRun):
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


async def _start_line(
    program: process.Program, run: Owner, container: ServiceContainer, network: str
) -> list[str]:
    """The `run` line of `container`; for a service with secrets, its loader's nonce and
    script are set on `container` too."""
    service = container.service
    if not service.secrets:
        return service_run_argv(program.binary, run, service, container.name, network)
    nonce = secrets.token_hex(16)
    # Made before the container starts: a secret that cannot be handed over fails the step now.
    container.script = loader.service_secrets_script(service.name, service.secrets, nonce)
    container.nonce = nonce
    image_command = (
        [] if service.commands else await images.image_command(program, service.image_id)
    )
    argv = service_run_argv(
        program.binary,
        run,
        service,
        container.name,
        network,
        nonce=nonce,
        image_command=image_command,
    )
    return argv


async def _send(stdin: ByteSendStream, script: bytes) -> None:
    """Hand the loader its script, then end its stdin (it has read all it needs by then). A CLI
    that went away meanwhile says why itself; the service then never starts."""
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stdin.send(script)
        await stdin.aclose()


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
        argv = ready_argv(program.binary, container.name, ready.run, nonce=container.nonce)
        interval = ready.interval
    else:
        argv, interval = running_argv(program.binary, container.name), RUNNING_CHECK_INTERVAL
    with anyio.move_on_after(timeout):
        while not container.ended.is_set():
            with anyio.move_on_after(max(interval, 5.0)):
                if ready is not None:
                    if await _check(program, argv, container.script) == 0:
                        return
                else:
                    answer = await process.capture(program, argv)
                    if answer.code == 0 and answer.out.strip() == "true":
                        return
            with anyio.move_on_after(interval):
                await container.ended.wait()
    if container.ended.is_set() and service.secrets and _without_sh(container):
        raise ServiceFailed(
            f"service '{service.name}' has secrets, which reach it through /bin/sh, and its"
            " image has no sh: give it an image with one, or no secrets"
        )
    if container.ended.is_set():
        problem = f"exited with code {container.exit_code} before it was ready"
    else:
        problem = f"was not ready after {timeout:g}s"
    if container.tail:
        log(f"parapipe: the last lines of the log of service '{service.name}':")
        for line in container.tail:
            log(f"  {service.name} | {line}")
    raise ServiceFailed(f"service '{service.name}' {problem}")


async def _say_when_ready(
    program: process.Program, container: ServiceContainer, say: LineSink, started: float
) -> None:
    """For a shell: a line once the service is ready. The tail of the log of one that never is
    stays in its log file, so the user reads one line (`ServiceFailed`) rather than twenty."""
    await _wait_ready(program, container, lambda line: None)
    name = container.service.name
    say(f"parapipe: service '{name}' is ready ({time.monotonic() - started:.1f}s)")


async def _check(program: process.Program, argv: list[str], script: bytes | None) -> int:
    """The exit code of a readiness check, `script` (the secrets' loader's) on its stdin."""
    if script is None:
        return (await process.capture(program, argv)).code
    async with process.spawn(program, argv, stdin=subprocess.PIPE) as checking:
        async with anyio.create_task_group() as streams:
            if checking.stdin is not None:
                streams.start_soon(_send, checking.stdin, script)
            streams.start_soon(process.drain, checking.stdout)
            streams.start_soon(process.drain, checking.stderr)
        return await checking.wait()


def _without_sh(container: ServiceContainer) -> bool:
    """Whether the engine could not start the secrets' loader: the image has no `sh` (Docker
    and Podman both say `exec: "sh": executable file not found`, and exit 127)."""
    return container.exit_code == 127 and any(
        '"sh": executable file not found' in line for line in container.tail
    )


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
