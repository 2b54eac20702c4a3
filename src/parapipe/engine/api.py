"""The interface every container engine implements, and the parts all engines share."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

from parapipe.errors import UsageError
from parapipe.model import (
    LABEL_CACHE,
    LABEL_PIPELINE,
    ImagePlan,
    ImageSpec,
    Prewarm,
    Readiness,
)

LineSink = Callable[[str], None]
"""Receives one line of output at a time, without its trailing newline."""


@dataclass(frozen=True, kw_only=True)
class ServiceRun:
    """A service beside one step's container: started before the step, on a network private
    to that step where `name` is its hostname, and gone with the step."""

    name: str
    image_id: str
    commands: tuple[str, ...]  # run in order by `sh -ec`; empty: the image's own command
    env: Mapping[str, str]
    # As a step's: values by name, for its environment only, never on a command line.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    ready: Readiness | None = None  # None: ready once its container runs
    # Where its output goes, a line at a time (its log file, with every secret masked).
    log: LineSink = field(default=lambda line: None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class StepRun:
    """One step's container: made from `image_id`, running `commands` in order."""

    run_id: str
    step: str
    image_id: str
    commands: tuple[str, ...]
    env: Mapping[str, str]
    workdir: str
    labels: Mapping[str, str]
    attempt: int = 1  # each attempt gets a container of its own
    # Host folders laid out like the workdir (the outputs of the step's needs): their content
    # is copied into the workdir before the step starts.
    inputs: tuple[Path, ...] = ()
    outputs: tuple[str, ...] = ()  # paths under the workdir to copy out once the step passed
    outputs_dir: Path | None = None  # host folder laid out like the workdir that receives them
    # Secret values by name, for the container's environment only: never on a command line,
    # in an image or in a log. Not in `env`, so engines can treat them apart.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    caches: tuple[CacheVolume, ...] = ()  # persistent volumes mounted into the container
    # `run -i`: a step that exits non-zero leaves its filesystem as the image tagged
    # `kept_image_tag(run_id, step)` (never with its secrets), for a shell once the run settled.
    keep_failed: bool = False
    # Started before the step, each ready first; the step reaches each by its name.
    services: tuple[ServiceRun, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ShellRun:
    """An interactive shell in a fresh container of `image_id`, attached to parapipe's own
    terminal: `run -i` (a failed step's kept image) and `parapipe shell` (the pipeline image)."""

    run_id: str
    step: str
    image_id: str
    env: Mapping[str, str]
    workdir: str
    labels: Mapping[str, str]
    shell: tuple[str, ...] = ()  # empty: /bin/bash when the image has it, else /bin/sh
    inputs: tuple[Path, ...] = ()  # as `StepRun.inputs`: copied into the workdir first
    # In the shell container's environment only, as a step's: never on a command line.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    caches: tuple[CacheVolume, ...] = ()
    # Fresh instances of the step's services, started and ready before the shell opens, on a
    # network of the shell's own, and removed when it closes; the shell reaches each by name.
    services: tuple[ServiceRun, ...] = ()
    # What the user is told while they start (a line per service ready), a line at a time.
    say: LineSink = field(default=lambda line: None, compare=False, repr=False)


def kept_image_tag(run_id: str, step: str) -> str:
    """`parapipe-failed:<run_id>-<step>`, the tag of a failed step's kept filesystem; a valid
    tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`), with a short hash when characters were replaced."""
    wanted = f"{run_id}-{step}"
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", wanted)
    if tag != wanted or len(tag) > 100:
        tag = tag[:100] + "-" + hashlib.sha256(wanted.encode()).hexdigest()[:8]
    return f"parapipe-failed:{tag}"


@dataclass(frozen=True, kw_only=True)
class CacheVolume:
    """`caches: {pip: /root/.cache/pip}`: a named volume that outlives runs, shared by every
    step of the pipeline that names the same cache."""

    name: str  # the engine's volume, from `cache_volume_name`
    pipeline: str
    cache: str  # its name in the spec
    path: str  # absolute, in the container

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_PIPELINE: self.pipeline, LABEL_CACHE: self.cache}


@dataclass(frozen=True, kw_only=True)
class RemovedImages:
    """What `Engine.remove_old_images` removed: tags, and the ids of untagged images."""

    removed: tuple[str, ...] = ()
    problem: str = ""  # why some image that should have gone is still there; "" when none is


def cache_volume_name(pipeline: str, cache: str) -> str:
    """`parapipe-cache-<pipeline>-<cache>`, a valid volume name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).

    A pipeline name that had to be changed for it gets a short hash of the original, so that two
    pipelines never share a cache by accident. Cache names are valid as they are.
    """
    scope = re.sub(r"[^a-zA-Z0-9_.-]+", "-", pipeline)[:64]
    if scope != pipeline:
        scope += "-" + hashlib.sha256(pipeline.encode()).hexdigest()[:8]
    return f"parapipe-cache-{scope}-{cache}"


def cache_volumes(pipeline: str, caches: Mapping[str, str]) -> tuple[CacheVolume, ...]:
    """`caches` (cache name -> path) of `pipeline` as the volumes that hold them."""
    return tuple(
        CacheVolume(
            name=cache_volume_name(pipeline, cache), pipeline=pipeline, cache=cache, path=path
        )
        for cache, path in caches.items()
    )


# Runs each command with `sh -e`, in order, stopping at the first failure. stderr is merged into
# stdout inside the container so the log keeps the order the step wrote it in.
_STEP_SCRIPT = """exec 2>&1
for command do
  printf '$ %s\\n' "$command"
  sh -ec "$command" || { status=$?; printf 'parapipe: exit %d\\n' "$status"; exit "$status"; }
done
"""


def step_command(commands: tuple[str, ...]) -> list[str]:
    """The argv a step's container runs: `sh -c SCRIPT parapipe CMD...`."""
    return ["sh", "-c", _STEP_SCRIPT, "parapipe", *commands]


class Engine(ABC):
    """A container engine. Methods raise `EngineError`/`EngineUnavailable` for engine faults and
    `ImageBuildFailed` when the user's image build fails; they never leak a library's exceptions.
    """

    name: ClassVar[str]
    # Whether `build_image` builds the pre-setup source stage as an image of its own
    # (`ImagePlan.source_tag`), which the next edit's `ImagePlan.delta` builds on.
    source_stages: ClassVar[bool] = False

    @abstractmethod
    async def check(self) -> None:
        """Raise `EngineUnavailable` (one line, saying how to fix it) unless the engine answers."""

    def address(self) -> str | None:
        """Where the engine is when its client does not use its built-in default (a remote
        daemon, a docker context, a podman connection, a Dagger runner host), for the run's
        first line; None for the default (`engine.endpoints`)."""
        return None

    def session(self, run_dir: Path) -> AbstractAsyncContextManager[None]:
        """Hold what the engine needs for one run (Dagger: its connection), open from before
        `resolve_base` until every step has finished; `remove_containers` runs after it closes.
        `run_dir` is the run's folder, for the engine's own logs. Raises `EngineUnavailable` when
        it cannot be opened. The CLI engines need nothing: by default this holds nothing."""
        return nullcontext()

    @abstractmethod
    async def resolve_base(self, image: ImageSpec, log: LineSink) -> str:
        """Return the id of the base image: `image.origin` found locally (pulled if missing)
        when it is a reference, else the image built from its Dockerfile (`image.build`)."""

    @abstractmethod
    async def find_image(self, tag: str) -> str | None:
        """Return the id of the image tagged `tag`, or None when there is none."""

    async def service_image(self, ref: str) -> str:
        """The id of the local image `ref`, for a service (never pulled); "" when the engine
        has no such image."""
        return await self.find_image(ref) or ""

    @abstractmethod
    async def build_image(self, plan: ImagePlan, log: LineSink) -> str:
        """Build the pipeline image, tag it `plan.tag`, and return its id."""

    @abstractmethod
    async def run_step(self, run: StepRun, log: LineSink) -> int:
        """Run one step in a fresh container from `run.image_id` and return its exit code.

        The container is removed however this ends, cancellation included.
        """

    def prewarm(self, request: Prewarm) -> None:  # noqa: B027 - optional, empty by default
        """Take the runner's latest forecast of the containers its steps will want (called as
        steps start and finish, from within `session`). Engines that start containers ahead of
        time act on it; by default it changes nothing."""

    @abstractmethod
    async def remove_containers(self, run_id: str) -> None:
        """Remove every container labelled with `run_id` (a last sweep at the end of a run)."""

    def shell_refusal(self) -> str | None:
        """Why this engine cannot open an interactive shell (`run -i`, `parapipe shell`), if it
        cannot; asked before anything runs."""
        return f"{self.name} cannot open an interactive shell"

    async def shell(self, run: ShellRun) -> int:
        """Run `run`'s shell attached to parapipe's terminal until the user leaves it, then
        remove its container; the shell's exit code. Only when `shell_refusal()` is None."""
        raise UsageError(self.shell_refusal() or f"{self.name}: no shell")

    async def remove_images(self, image_ids: Sequence[str]) -> None:  # noqa: B027 - optional
        """Remove the kept images of failed steps (`run -i`); by default there are none."""

    async def remove_cache_volumes(self, pipeline: str) -> list[str]:
        """Remove the cache volumes of `pipeline` (`parapipe cache prune --volumes`); their
        names. Raises `UsageError` for an engine that keeps them out of parapipe's reach."""
        raise UsageError(f"{self.name} keeps cache volumes itself: parapipe cannot remove them")

    async def remove_old_images(
        self, pipeline: str, *, keep: int, keep_ids: frozenset[str] = frozenset()
    ) -> RemovedImages:
        """Remove the images labelled as `pipeline`'s beyond the newest `keep` (counting
        `keep_ids`, which always stay), except those a container uses, and every untagged one a
        failed build left, with the layers only they held. Raises `UsageError` for an engine
        that keeps its images out of parapipe's reach."""
        raise UsageError(f"{self.name} keeps images in its own engine, which prunes them itself")

    # -- image archives (`parapipe image save/load`, `export github --split`) -------------------

    def archive_refusal(self) -> str | None:
        """Why this engine cannot save or load image archives, if it cannot."""
        return (
            f"{self.name} keeps its images in its own engine: image archives"
            " (parapipe image save/load) need Docker or Podman"
        )

    async def save_images(self, references: Sequence[str], destination: IO[bytes]) -> None:
        """Write the images `references` name (their shared layers once) to `destination` as one
        compressed archive. Raises `UsageError` for an engine without archives."""
        raise UsageError(self.archive_refusal() or f"{self.name}: no image archives")

    async def load_images(self, archive: Path) -> list[str]:
        """Load an archive `save_images` wrote; the references it loaded. A file that is not
        one, or a damaged one, is a `UsageError` (one line)."""
        raise UsageError(self.archive_refusal() or f"{self.name}: no image archives")

    async def image_labels(self, reference: str) -> dict[str, str]:
        """The labels of the image `reference` names."""
        raise UsageError(self.archive_refusal() or f"{self.name}: no image archives")

    async def tag_image(self, image_id: str, reference: str) -> None:
        raise UsageError(self.archive_refusal() or f"{self.name}: no image archives")

    async def untag_images(self, references: Sequence[str]) -> None:
        """Remove these tags, in order, and each image left with none (and no child)."""
        raise UsageError(self.archive_refusal() or f"{self.name}: no image archives")
