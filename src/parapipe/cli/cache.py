"""`parapipe cache prune`: keep the step cache within a size, and remove cache volumes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from parapipe.errors import ExitCode, UsageError
from parapipe.model import ENGINE_CHOICES

DEFAULT_MAX_SIZE = "2G"


def add_cache_parser(commands: Any, add_spec: Callable[[argparse.ArgumentParser], None]) -> None:
    cache = commands.add_parser(
        "cache",
        help="manage the step cache",
        description="The step cache (.parapipe/cache/) keeps each passed step's log and outputs"
        " under a key of everything it depended on, so an identical step is not run again.",
    )
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    prune = actions.add_parser(
        "prune",
        help="remove the least recently used entries beyond a size",
        description="Remove the least recently used step-cache entries until the cache holds"
        " at most --max-size; with --volumes, also remove the pipeline's cache volumes.",
    )
    add_spec(prune)
    prune.add_argument(
        "--max-size",
        default=DEFAULT_MAX_SIZE,
        metavar="SIZE",
        help="the most the cache may hold, e.g. 500M, 2G, or 0 to empty it"
        f" (default: {DEFAULT_MAX_SIZE})",
    )
    prune.add_argument(
        "--volumes",
        action="store_true",
        help="also remove the pipeline's cache volumes (steps' `caches`), which the next run"
        " creates again empty; a volume that a container still mounts stays, and the command"
        " fails (exit 3)",
    )
    prune.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="the engine whose volumes --volumes removes; auto as for 'parapipe run'"
        " (default: auto)",
    )


def run_cache_command(args: argparse.Namespace) -> int:
    from parapipe.run.state.step_cache import StepCache, parse_size
    from parapipe.spec.load import load_pipeline

    try:
        max_bytes = parse_size(args.max_size)
    except ValueError:
        raise UsageError(
            f"--max-size takes a size such as 500M or 2G, not '{args.max_size}'"
        ) from None
    pipeline = load_pipeline(args.spec)
    removed, freed = StepCache(pipeline.state_dir).prune(max_bytes)
    entries = "entry" if removed == 1 else "entries"
    print(f"removed {removed} step-cache {entries} ({freed / 2**20:.1f} MiB)")
    if args.volumes:
        import anyio  # not for the step cache alone: it starts faster without

        volumes = anyio.run(_remove_cache_volumes, args.engine, pipeline.name)
        print(f"removed {len(volumes)} cache volume(s)" + "".join(f"\n  {v}" for v in volumes))
    return ExitCode.OK


async def _remove_cache_volumes(engine_name: str, pipeline: str) -> list[str]:
    from parapipe.engine.registry import choose_engine

    engine, _ = await choose_engine(engine_name)
    return await engine.remove_cache_volumes(pipeline)
