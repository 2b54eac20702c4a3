"""The command line, the only place that wires the layers together. `parser.py` defines the
commands and `requests.py` the typed values they parse into; `run.py`, `watch.py`, `hook.py`,
`export.py`, `cache.py` and `spec_commands.py` carry them out. `main` is the `parapipe` entry
point and the one place an error becomes what the user sees: one line (`FILE:LINE:COL: message`
when it has a place) and a documented exit code. A bug's traceback goes to the run's folder
instead (see `run.pipeline_run`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from parapipe.cli.cache import cache_prune_command
from parapipe.cli.export import export_github_command
from parapipe.cli.hook import hook_install_command, hook_run_command, hook_uninstall_command
from parapipe.cli.image import image_command
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
from parapipe.cli.run import run_command
from parapipe.cli.shell import shell_command
from parapipe.cli.spec_commands import graph_command, validate_command
from parapipe.cli.watch import watch_command
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
    match request:
        case RunRequest():
            return run_command(request)
        case WatchRequest():
            return watch_command(request)
        case ValidateRequest():
            return validate_command(request)
        case GraphRequest():
            return graph_command(request)
        case ExportGithubRequest():
            return export_github_command(request)
        case HookInstallRequest():
            return hook_install_command(request)
        case HookUninstallRequest():
            return hook_uninstall_command(request)
        case HookRunRequest():
            return hook_run_command(request)
        case CachePruneRequest():
            return cache_prune_command(request)
        case ShellRequest():
            return shell_command(request)
        case ImageRequest():
            return image_command(request)
