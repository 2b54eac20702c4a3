"""`parapipe cache prune`: keep the step cache within a size, and remove cache volumes and old
pipeline images."""

from __future__ import annotations

from parapipe.cli.requests import CachePruneRequest
from parapipe.errors import EngineError, ExitCode


def cache_prune_command(request: CachePruneRequest) -> int:
    from parapipe.run.state.step_cache import StepCache
    from parapipe.spec.load import load_pipeline

    pipeline = load_pipeline(request.spec)
    removed, freed = StepCache(pipeline.state_dir).prune(request.max_bytes)
    entries = "entry" if removed == 1 else "entries"
    print(f"removed {removed} step-cache {entries} ({freed / 2**20:.1f} MiB)")
    if request.volumes:
        import anyio  # not for the step cache alone: it starts faster without

        volumes = anyio.run(_remove_cache_volumes, request.engine, pipeline.name)
        print(f"removed {len(volumes)} cache volume(s)" + "".join(f"\n  {v}" for v in volumes))
    if request.images:
        import anyio

        keep = request.keep_images or pipeline.image.keep
        images = anyio.run(_remove_old_images, request.engine, pipeline.name, keep)
        print(f"removed {len(images)} old image(s)" + "".join(f"\n  {i}" for i in images))
    return ExitCode.OK


async def _remove_cache_volumes(engine_name: str, pipeline: str) -> list[str]:
    from parapipe.engine.registry import choose_engine

    engine, _ = await choose_engine(engine_name)
    return await engine.remove_cache_volumes(pipeline)


async def _remove_old_images(engine_name: str, pipeline: str, keep: int) -> list[str]:
    from parapipe.engine.registry import choose_engine

    engine, _ = await choose_engine(engine_name)
    removed = await engine.remove_old_images(pipeline, keep=keep)
    if removed.problem:
        raise EngineError(f"{engine.name}: {removed.problem}")
    return list(removed.removed)
