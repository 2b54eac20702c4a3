"""What each command asks for, as typed values: the command line is parsed into one of these
before anything below the CLI is called, so no argparse `Namespace` leaves this package."""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from parapipe.errors import UsageError

# The values `--engine` and `--output` accept. They belong in the model beside the engine
# registry's and the reporters' own lists; until the model has them, the CLI keeps them here.
GRAPH_FORMATS = ("text", "mermaid", "dot")
SCHEDULES = ("critical-path", "fifo")

DEFAULT_SPEC = Path("pipelines/ci.yaml")
DEFAULT_SCHEDULE = "critical-path"
DEFAULT_OUTPUT = "auto"
DEFAULT_MAX_SIZE = "2G"


def default_jobs() -> int:
    """`--jobs` when not given: the number of CPUs."""
    return os.cpu_count() or 1


def default_engine() -> str:
    """`--engine` when not given: $PARAPIPE_ENGINE, else auto."""
    return os.environ.get("PARAPIPE_ENGINE", "auto")


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """`parapipe run`; the defaults are those of `parapipe run -f SPEC`, which a hook runs."""

    spec: Path
    steps: tuple[str, ...] = ()  # empty: every step
    jobs: int = field(default_factory=default_jobs)
    engine: str = field(default_factory=default_engine)
    keep_going: bool = False
    schedule: str = DEFAULT_SCHEDULE
    output: str = DEFAULT_OUTPUT
    no_deps: bool = False
    changed_since: str | None = None  # a git ref
    no_cache: bool = False
    prewarm: bool = True
    export_dir: Path | None = None
    junit: Path | None = None
    report: Path | None = None
    timeline: Path | None = None
    # `--secret NAME=VALUE` and `--secret-file NAME=PATH`, read when the run starts.
    secret_flags: tuple[str, ...] = field(default=(), repr=False)
    secret_file_flags: tuple[str, ...] = ()
    interactive: bool = False  # -i: a shell in each failed step once the run settled
    keep_failed: bool = False
    shell: tuple[str, ...] = ()  # --shell, split; empty: bash if the image has it, else sh


@dataclass(frozen=True, kw_only=True)
class ShellRequest:
    """`parapipe shell STEP`."""

    spec: Path
    step: str
    engine: str = field(default_factory=default_engine)
    shell: tuple[str, ...] = ()
    secret_flags: tuple[str, ...] = field(default=(), repr=False)
    secret_file_flags: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class WatchRequest:
    """`parapipe watch`: the run it repeats on every change, with `parapipe run`'s options."""

    run: RunRequest


@dataclass(frozen=True, kw_only=True)
class ValidateRequest:
    spec: Path


@dataclass(frozen=True, kw_only=True)
class GraphRequest:
    spec: Path
    steps: tuple[str, ...] = ()  # empty: every step
    format: str = "text"


@dataclass(frozen=True, kw_only=True)
class ExportGithubRequest:
    spec: Path
    split: bool = False
    install: str = ""  # empty: pip install parapipe==<this version>
    registry: str = ""  # --split: push the image there instead of handing on an archive


@dataclass(frozen=True, kw_only=True)
class ImageRequest:
    """`parapipe image id|build|save|load`."""

    action: str
    spec: Path
    engine: str = field(default_factory=default_engine)
    archive: str = ""  # save: the file to write ("-": stdout); load: the file to read


@dataclass(frozen=True, kw_only=True)
class HookInstallRequest:
    spec: Path
    steps: tuple[str, ...] = ()  # empty: the steps tagged pre-push, else every step
    force: bool = False


@dataclass(frozen=True, kw_only=True)
class HookUninstallRequest:
    folder: Path  # a folder in the repository whose hook goes


@dataclass(frozen=True, kw_only=True)
class HookRunRequest:
    spec: Path
    steps: tuple[str, ...] = ()  # empty: the steps tagged pre-push, else every step
    remote: str = "origin"


@dataclass(frozen=True, kw_only=True)
class CachePruneRequest:
    spec: Path
    max_bytes: int
    volumes: bool = False
    images: bool = False
    keep_images: int | None = None  # None: the spec's `image.keep`
    engine: str = "auto"


Request = (
    RunRequest
    | WatchRequest
    | ValidateRequest
    | GraphRequest
    | ExportGithubRequest
    | HookInstallRequest
    | HookUninstallRequest
    | HookRunRequest
    | CachePruneRequest
    | ShellRequest
    | ImageRequest
)


def request_from(args: argparse.Namespace) -> Request:
    """The typed request for parsed arguments (see `parser.build_parser`). Raises `UsageError`
    for a value argparse cannot check itself: a `--steps` list, a `--max-size`."""
    if args.command == "run":
        return _run_request(args)
    if args.command == "watch":
        return WatchRequest(run=_run_request(args))
    if args.command == "validate":
        return ValidateRequest(spec=args.spec)
    if args.command == "graph":
        return GraphRequest(spec=args.spec, steps=tuple(args.steps), format=args.format)
    if args.command == "export":  # github is its only target
        return ExportGithubRequest(
            spec=args.spec, split=args.split, install=args.install, registry=args.registry
        )
    if args.command == "hook":
        return _hook_request(args)
    if args.command == "cache":  # prune is its only action
        return CachePruneRequest(
            spec=args.spec,
            max_bytes=_max_bytes(args.max_size),
            volumes=args.volumes,
            images=args.images,
            keep_images=args.keep,
            engine=args.engine,
        )
    if args.command == "image":
        return ImageRequest(
            action=args.image_command,
            spec=args.spec,
            engine=args.engine,
            archive=getattr(args, "output", None) or getattr(args, "archive", None) or "",
        )
    if args.command == "shell":
        return ShellRequest(
            spec=args.spec,
            step=args.step,
            engine=args.engine,
            shell=_shell_argv(args.shell),
            secret_flags=tuple(args.secret),
            secret_file_flags=tuple(args.secret_file),
        )
    raise AssertionError(f"a command the parser does not define: {args.command!r}")


def _run_request(args: argparse.Namespace) -> RunRequest:
    return RunRequest(
        spec=args.spec,
        steps=tuple(args.steps),
        jobs=args.jobs,
        engine=args.engine,
        keep_going=args.keep_going,
        schedule=args.schedule,
        output=args.output,
        no_deps=args.no_deps,
        changed_since=args.changed_since,
        no_cache=args.no_cache,
        prewarm=not args.no_prewarm,
        export_dir=args.export,
        junit=args.junit,
        report=args.report,
        timeline=args.timeline,
        secret_flags=tuple(args.secret),
        secret_file_flags=tuple(args.secret_file),
        interactive=args.interactive,
        keep_failed=args.keep_failed,
        shell=_shell_argv(args.shell),
    )


def _shell_argv(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    try:
        words = tuple(shlex.split(text))
    except ValueError as exc:
        raise UsageError(f"--shell: {exc}: {text!r}") from None
    if not words:
        raise UsageError("--shell needs a command, such as --shell /bin/zsh")
    return words


def _hook_request(args: argparse.Namespace) -> Request:
    from parapipe.git.hooks import parse_steps

    if args.hook_command == "uninstall":
        return HookUninstallRequest(folder=Path.cwd())
    steps = parse_steps(args.steps)
    if args.hook_command == "install":
        return HookInstallRequest(spec=args.spec, steps=steps, force=args.force)
    return HookRunRequest(spec=args.spec, steps=steps, remote=args.remote)


def _max_bytes(text: str) -> int:
    from parapipe.run.state.step_cache import parse_size

    try:
        return parse_size(text)
    except ValueError:
        raise UsageError(f"--max-size takes a size such as 500M or 2G, not '{text}'") from None
