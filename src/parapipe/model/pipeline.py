"""The validated pipeline: immutable, keyword-only, and remembering where each part came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from parapipe.errors import Location
from parapipe.model.matrix import MatrixInstance
from parapipe.model.service import Service

DEFAULT_WORKDIR = "/src"


@dataclass(frozen=True, kw_only=True)
class DockerfileBuild:
    """`image.build`: the base image comes from a Dockerfile instead of a reference."""

    context: Path
    dockerfile: Path
    args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PrepareSpec:
    """`image.prepare`: the dependency layer, made before the source is copied in, with only
    the files it names present, so that a source edit reuses it."""

    files: tuple[str, ...]  # globs under image.source
    run: tuple[str, ...]
    env: Mapping[str, str]
    file_locations: tuple[Location, ...]  # of each glob, for "matches nothing"


@dataclass(frozen=True, kw_only=True)
class ImageSpec:
    """`image`: the one image every step runs in."""

    # Where the base image comes from: `image.from` (an image reference) or `image.build`.
    # One field, so that an image with neither or both cannot be made.
    origin: str | DockerfileBuild
    source: Path  # absolute host folder copied into workdir
    exclude: tuple[str, ...]  # gitignore-style patterns, relative to source
    workdir: str
    env: Mapping[str, str]
    setup: tuple[str, ...]
    host_ca: bool
    location: Location  # of the `image` key
    prepare: PrepareSpec | None = None
    caches: Mapping[str, str] = field(default_factory=dict)  # cache name -> path, build only
    keep: int = 3  # pipeline images kept after a build (`image.keep`); older ones are removed


@dataclass(frozen=True, kw_only=True)
class Step:
    name: str
    run: tuple[str, ...]  # run in order in one container, stopping at the first failure
    needs: tuple[str, ...]
    env: Mapping[str, str]
    location: Location  # of the step's name in `steps`
    timeout: float | None = None  # seconds; the container is killed after this long
    retries: int = 0  # further attempts after a failed one, each in a fresh container
    retry_on: frozenset[int] | None = None  # exit codes worth a retry; None: any failure
    retry_on_timeout: bool = True  # a timed-out attempt may be retried
    allow_failure: bool = False
    tags: tuple[str, ...] = ()
    when_changed: tuple[str, ...] | None = None  # globs under image.source; None: always runs
    outputs: tuple[str, ...] = ()  # paths relative to the workdir, handed to dependents
    inputs: tuple[str, ...] | None = None  # globs under image.source the cache key depends on
    cache: bool = True  # may be skipped when an identical run of it passed before
    caches: Mapping[str, str] = field(default_factory=dict)  # volume name -> container path
    secrets: tuple[str, ...] = ()  # names of host secrets put in its environment
    matrix: MatrixInstance | None = None  # set on each instance of a matrix step
    services: tuple[str, ...] = ()  # names of `Pipeline.services` started beside it


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    name: str
    spec_path: Path  # absolute
    project_root: Path  # git root holding the spec, else its folder; `.parapipe/` lives here
    image: ImageSpec
    steps: Mapping[str, Step]  # in file order
    services: Mapping[str, Service] = field(default_factory=dict)  # in file order

    @property
    def state_dir(self) -> Path:
        return self.project_root / ".parapipe"
