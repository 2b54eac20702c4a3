"""Docker and Podman, driven through their command-line clients.

Podman's CLI takes the same commands and flags, so `PodmanEngine` only changes the binary, the
probe and the build flavour. Every command line comes from `argv` and runs through
`engine.process`; `images` builds and finds images, `steps` runs the steps' containers, and
`pool` starts containers ahead of the steps. This module answers the `Engine` interface with
them and says what a failing daemon means.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import IO, ClassVar, Final

import anyio

from parapipe.engine import endpoints, process
from parapipe.engine.api import Engine, LineSink, RemovedImages, ShellRun, StepRun
from parapipe.engine.docker import (
    archive,
    commit_build,
    errors,
    images,
    old_images,
    podman_setup,
    services,
    shell,
)
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import pool as docker_pool
from parapipe.engine.docker.images import BuildFlavour
from parapipe.engine.docker.steps import StepContainers
from parapipe.errors import EngineError, EngineUnavailable
from parapipe.model import ImagePlan, ImageSpec, Prewarm

CHECK_TIMEOUT: Final = 5.0  # seconds for the engine to answer at all
# A remote engine's first answer may wait for an ssh handshake or a TLS one across a network.
REMOTE_CHECK_TIMEOUT: Final = 20.0
QUERY_TIMEOUT: Final = 60.0  # inspect / ps / rm on a busy daemon


class DockerEngine(Engine):
    name: ClassVar[str] = "docker"
    binary: ClassVar[str] = "docker"
    source_stages: ClassVar[bool] = True
    install_hint: ClassVar[str] = "install Docker (https://docs.docker.com/engine/install/)"
    start_hint: ClassVar[str] = "start it (sudo systemctl start docker, or scripts/start-engine)"
    save_flags: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.program = process.Program(
            name=self.name, binary=self.binary, install_hint=self.install_hint
        )
        self._flavour: BuildFlavour | None = None
        self._pool: docker_pool.ContainerPool | None = None  # while a session is open
        self._steps = StepContainers(
            self.program, daemon_lost=self._daemon_lost, fix_hint=self.fix_hint
        )

    # -- the Engine interface ---------------------------------------------------------------

    async def check(self) -> None:
        timeout = CHECK_TIMEOUT if endpoints.current(self.name).local else REMOTE_CHECK_TIMEOUT
        try:
            with anyio.fail_after(timeout):
                answer = await process.capture(self.program, self.check_argv())
        except TimeoutError:
            raise EngineUnavailable(
                f"{self.name}: no daemon answered on {self.endpoint()} within"
                f" {timeout:g} s; {self.start_hint}"
            ) from None
        if answer.code != 0:
            raise EngineUnavailable(
                self.unavailable_message(process.text(answer.stderr).splitlines())
            )

    async def resolve_base(self, image: ImageSpec, log: LineSink) -> str:
        if isinstance(image.origin, str):
            return await images.local_or_pulled(self.program, image.origin, log)
        return await images.build_base(self.program, image.origin, await self._build_flavour(), log)

    async def find_image(self, tag: str) -> str | None:
        return await images.find_image(self.program, tag)

    async def build_image(self, plan: ImagePlan, log: LineSink) -> str:
        flavour = await self._pipeline_flavour(plan, log)
        if flavour.run_and_commit:
            ensure_volume = self._steps.ensure_volume
            return await commit_build.build_pipeline_image(self.program, plan, log, ensure_volume)
        return await images.build_pipeline_image(self.program, plan, flavour, log)

    def session(self, run_dir: Path) -> AbstractAsyncContextManager[None]:
        return self._pool_session(run_dir)

    def prewarm(self, request: Prewarm) -> None:
        if self._pool is not None:
            self._pool.request(request)

    async def run_step(self, run: StepRun, log: LineSink) -> int:
        return await self._steps.run(run, log, self._pool)

    async def remove_containers(self, run_id: str) -> None:
        await self._remove_run_containers(run_id)
        # Services' networks, once the containers on them are gone.
        await services.remove_run_networks(self.program, run_id)

    async def _remove_run_containers(self, run_id: str) -> None:
        listed = await self._query(argvs.list_run_containers_argv(self.binary, run_id))
        if listed.code != 0:
            raise EngineError(f"{self.name}: cannot list the run's containers: {listed.problem}")
        containers = listed.out.split()
        if not containers:
            return
        removed = await self._query(argvs.remove_argv(self.binary, containers))
        if removed.code == 0:
            return
        # `rm -f` also fails for a container that was removing itself (`--rm`) meanwhile;
        # only what is still there is a failure.
        again = await self._query(argvs.list_run_containers_argv(self.binary, run_id))
        if again.code != 0 or again.out.split():
            raise EngineError(f"{self.name}: cannot remove the run's containers: {removed.problem}")

    def shell_refusal(self) -> str | None:
        return None

    async def shell(self, run: ShellRun) -> int:
        return await shell.open_shell(self._steps, run)

    async def remove_images(self, image_ids: Sequence[str]) -> None:
        await shell.remove_images(self.program, image_ids)

    async def remove_cache_volumes(self, pipeline: str) -> list[str]:
        listed = await self._query(argvs.list_cache_volumes_argv(self.binary, pipeline))
        if listed.code != 0:
            raise EngineError(f"{self.name}: cannot list the cache volumes: {listed.problem}")
        volumes = sorted(listed.out.split())
        if not volumes:
            return []
        removed = await self._query(argvs.volume_remove_argv(self.binary, volumes))
        if removed.code != 0:
            # A volume that a container still mounts stays; the others went.
            raise EngineError(f"{self.name}: cannot remove every cache volume: {removed.problem}")
        return volumes

    async def remove_old_images(
        self, pipeline: str, *, keep: int, keep_ids: frozenset[str] = frozenset()
    ) -> RemovedImages:
        return await old_images.remove_old_images(
            self.program, pipeline, keep=keep, keep_ids=keep_ids
        )

    def archive_refusal(self) -> str | None:
        return None

    async def save_images(self, references: Sequence[str], destination: IO[bytes]) -> None:
        await archive.save(self.program, references, destination, self.save_flags)

    async def load_images(self, archive_path: Path) -> list[str]:
        return await archive.load(self.program, archive_path)

    async def image_labels(self, reference: str) -> dict[str, str]:
        return await archive.labels(self.program, reference)

    async def tag_image(self, image_id: str, reference: str) -> None:
        await archive.tag(self.program, image_id, reference)

    async def untag_images(self, references: Sequence[str]) -> None:
        await archive.untag(self.program, references)

    # -- what differs between Docker and Podman ----------------------------------------------

    def check_argv(self) -> list[str]:
        return argvs.check_argv(self.binary)

    def address(self) -> str | None:
        return endpoints.current(self.name).label()

    def endpoint(self) -> str:
        """Where the client looks for the daemon, for error messages."""
        return endpoints.current(self.name).address

    def unavailable_message(self, stderr: Sequence[str]) -> str:
        """One line for a probe that failed: what went wrong and how to fix it."""
        problem = process.error_line(stderr)
        if errors.means_permission_denied(problem):
            return (
                f"{self.name}: {problem}; add yourself to the docker group"
                " (sudo usermod -aG docker $USER) and log in again"
            )
        if (address := errors.unanswered_daemon(problem)) is not None:
            return f"{self.name}: no daemon answered on {address}; {self.start_hint}"
        return f"{self.name}: {problem}; {self.start_hint}"

    def fix_hint(self, problem: str) -> str | None:
        """What to do about a refusal to run a step that is the host's setup, if it is one."""
        return None

    async def _build_flavour(self) -> BuildFlavour:
        if self._flavour is None:
            self._flavour = await images.docker_flavour(self.program)
        return self._flavour

    async def _pipeline_flavour(self, plan: ImagePlan, log: LineSink) -> BuildFlavour:
        return await images.pipeline_flavour(self.program, plan, await self._build_flavour(), log)

    # -- helpers --------------------------------------------------------------------------------

    async def _query(self, argv: Sequence[str]) -> process.Finished:
        return await process.query(self.program, argv, QUERY_TIMEOUT)

    async def _daemon_lost(self, run: StepRun, code: int) -> EngineError | None:
        """A daemon that shuts down kills its containers (137) after it stopped answering, and
        one that is killed, or whose connection breaks, cuts the attached CLI off (125): that is
        the engine going away, not the step failing."""
        try:
            await self.check()
        except EngineUnavailable:
            how = f"its container ended with exit {code}" if code > 128 else "the CLI was cut off"
            return EngineError(
                f"{self.name}: the daemon on {self.endpoint()} stopped answering while step"
                f" {run.step!r} ran ({how}); {self.start_hint}"
            )
        return None

    @asynccontextmanager
    async def _pool_session(self, run_dir: Path) -> AsyncIterator[None]:
        async with docker_pool.open_pool(self.program, run_dir) as pool:
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None


class PodmanEngine(DockerEngine):
    name: ClassVar[str] = "podman"
    binary: ClassVar[str] = "podman"
    install_hint: ClassVar[str] = "install Podman (https://podman.io/docs/installation)"
    start_hint: ClassVar[str] = "run `podman info` to see why (podman machine start on macOS)"
    # Without -m, `podman save A B` writes A with B as one more of its tags.
    save_flags: ClassVar[tuple[str, ...]] = ("--multi-image-archive",)

    def check_argv(self) -> list[str]:
        return argvs.podman_check_argv(self.binary)

    def unavailable_message(self, stderr: Sequence[str]) -> str:
        return f"{self.name}: {process.error_line(stderr)}; {self.start_hint}"

    def fix_hint(self, problem: str) -> str | None:
        # A runtime or ulimit refusal is the host's setup, not the step: name the fix.
        return podman_setup.fix_hint(problem)

    async def _build_flavour(self) -> BuildFlavour:
        # Buildah takes the legacy flags; it removes intermediate containers by default.
        return BuildFlavour()

    async def _pipeline_flavour(self, plan: ImagePlan, log: LineSink) -> BuildFlavour:
        # Buildah has had `RUN --mount=type=cache` since 1.24 (Podman 4.0).
        return BuildFlavour(cache_mounts=bool(plan.caches))
