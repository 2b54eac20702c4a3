"""Scale-out benchmark: handing the pipeline image to another machine as an archive
(`parapipe image save` + `parapipe image load`) against building it again there.

The image is parapipe's own (pipelines/ci.yaml), built first if it is not there. Each round:

- rebuild: the same image built by parapipe's own build path (the client and builder parapipe
  picks, its Dockerfile and context) with `--no-cache`, so no layer is reused: what a fresh
  runner does. The build cache's `image.caches` mount (pip's downloads) is left as it is, so
  the figure is a lower bound for a runner that must download everything;
- save: `parapipe image save -o FILE` (the image and its base, compressed), as a whole command;
- load: the image removed (`docker rmi`), then `parapipe image load FILE`, as a whole command
  (the base is still here, as on a runner that has it; its layers are read and checked anyway).

Usage: python benchmarks/scale_out.py [--repeat N] [--markdown]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from parapipe.engine.docker import images
from parapipe.engine.docker.engine import DockerEngine
from parapipe.run.image_archive import plan_here
from parapipe.spec.load import load_pipeline

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "pipelines" / "ci.yaml"
PARAPIPE = [sys.executable, "-m", "parapipe"]
REBUILD_TAG = "parapipe-bench/scale-out:rebuild"


def parapipe(*args: str) -> float:
    started = time.monotonic()
    done = subprocess.run([*PARAPIPE, *args, "-f", str(SPEC)], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"parapipe {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return elapsed


async def rebuild() -> float:
    """parapipe's build of the same plan, under another tag, with no layer reused."""
    engine = DockerEngine()
    plan = await plan_here(engine, load_pipeline(SPEC), lambda _line: None)
    plan = dataclasses.replace(plan, tag=REBUILD_TAG)
    flavour = await images.pipeline_flavour(
        engine.program, plan, await images.docker_flavour(engine.program), lambda _line: None
    )
    flavour = dataclasses.replace(flavour, flags=(*flavour.flags, "--no-cache"))
    started = time.monotonic()
    await images.build_pipeline_image(engine.program, plan, flavour, lambda _line: None)
    return time.monotonic() - started


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    options = parser.parse_args()
    parapipe("image", "build")
    tag = subprocess.run(
        [*PARAPIPE, "image", "id", "-f", str(SPEC)], capture_output=True, text=True, check=True
    ).stdout.strip()
    image_size = int(docker("image", "inspect", "--format", "{{.Size}}", tag))
    rebuilds, saves, loads, sizes = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="parapipe-scale-out-") as scratch:
        archive = Path(scratch, "image.tar.zst")
        try:
            for _ in range(options.repeat):
                rebuilds.append(anyio.run(rebuild))
                docker("rmi", REBUILD_TAG)
                saves.append(parapipe("image", "save", "-o", str(archive)))
                sizes.append(archive.stat().st_size)
                docker("rmi", tag)
                loads.append(parapipe("image", "load", str(archive)))
        finally:
            subprocess.run(["docker", "rmi", REBUILD_TAG], capture_output=True, check=False)
    rows = [
        ("rebuild, no layer reused (s)", statistics.median(rebuilds)),
        ("image save (s)", statistics.median(saves)),
        ("image load (s)", statistics.median(loads)),
        ("save + load (s)", statistics.median(s + ld for s, ld in zip(saves, loads, strict=True))),
        ("image size (MiB, uncompressed)", image_size / 2**20),
        ("archive size (MiB, with its base)", statistics.median(sizes) / 2**20),
    ]
    if options.markdown:
        print(f"| {tag}, median of {options.repeat} | value |\n| --- | ---: |")
        for name, value in rows:
            print(f"| {name} | {value:.1f} |")
    else:
        for name, value in rows:
            print(f"{name:40} {value:8.1f}")
    print("raw:", {"rebuild": rebuilds, "save": saves, "load": loads, "size": sizes})


if __name__ == "__main__":
    main()
