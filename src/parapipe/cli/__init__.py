"""The command line, the only place that wires the layers together. `parser.py` defines the
commands and `requests.py` the typed values they parse into; `run.py`, `watch.py`, `hook.py`,
`export.py`, `cache.py` and `spec_commands.py` carry them out. `main` is the `parapipe` entry
point and the one place an error becomes what the user sees: one line (`FILE:LINE:COL: message`
when it has a place) and a documented exit code. A bug's traceback goes to the run's folder
instead (see `run.pipeline_run`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from parapipe.cli.parser import build_parser
from parapipe.cli.requests import (
    CachePruneRequest,
    ExportGithubRequest,
    GraphRequest,
    HookInstallRequest,
    HookRunRequest,
    HookUninstallRequest,
    ImageRequest,
    Request,
    RunRequest,
    ShellRequest,
    ValidateRequest,
    WatchRequest,
    request_from,
)
from parapipe.errors import ExitCode, ParapipeError, SpecError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(request_from(args))
    except ParapipeError as exc:
        print(f"parapipe: {exc}" if _needs_prefix(exc) else str(exc), file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("parapipe: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


def _needs_prefix(exc: ParapipeError) -> bool:
    return not (isinstance(exc, SpecError) and exc.location is not None)


def _dispatch(request: Request) -> int:
    # Each command's module is imported when it is asked for: an unchanged re-run is mostly
    # Python starting, and the other commands' imports would only add to it.
    match request:
        case RunRequest():
            from parapipe.cli.run import run_command

            return run_command(request)
        case WatchRequest():
            from parapipe.cli.watch import watch_command

            return watch_command(request)
        case ValidateRequest():
            from parapipe.cli.spec_commands import validate_command

            return validate_command(request)
        case GraphRequest():
            from parapipe.cli.spec_commands import graph_command

            return graph_command(request)
        case ExportGithubRequest():
            from parapipe.cli.export import export_github_command

            return export_github_command(request)
        case HookInstallRequest():
            from parapipe.cli.hook import hook_install_command

            return hook_install_command(request)
        case HookUninstallRequest():
            from parapipe.cli.hook import hook_uninstall_command

            return hook_uninstall_command(request)
        case HookRunRequest():
            from parapipe.cli.hook import hook_run_command

            return hook_run_command(request)
        case CachePruneRequest():
            from parapipe.cli.cache import cache_prune_command

            return cache_prune_command(request)
        case ShellRequest():
            from parapipe.cli.shell import shell_command

            return shell_command(request)
        case ImageRequest():
            from parapipe.cli.image import image_command

            return image_command(request)
