"""`parapipe image id|build|save|load`: the pipeline image on its own, for workflows that build
it once and hand it to other machines (`export github --split`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from parapipe.cli.requests import ImageRequest, default_engine
from parapipe.errors import ExitCode, UsageError
from parapipe.model import ENGINE_CHOICES

if TYPE_CHECKING:
    from parapipe.engine.api import Engine
    from parapipe.model import Pipeline


def add_image_parser(commands: Any, add_spec: Any) -> None:
    image = commands.add_parser(
        "image",
        help="the pipeline image on its own: its tag, build, save, load",
        description="The pipeline image without a run: print its content tag, build it, write it"
        " to a compressed archive, or load one (checked against the spec).",
    )
    actions = image.add_subparsers(dest="image_command", metavar="ACTION", parser_class=type(image))
    actions.required = True
    described = {
        "id": "print the image's content tag without building it (the base is found, pulled or"
        " built as 'run' does: its id is one of the inputs)",
        "build": "build the image, or say it is there",
        "save": "write the image and its base to a compressed archive (zstd if installed, else"
        " gzip), building it first if it is not there",
        "load": "load an archive and check that it holds the image the spec plans here; on a"
        " mismatch name the inputs that differ, remove what it loaded and exit 2",
    }
    for action, text in described.items():
        parser = actions.add_parser(action, help=text.split(" (")[0], description=text + ".")
        add_spec(parser)
        parser.add_argument(
            "--engine",
            choices=ENGINE_CHOICES,
            default=default_engine(),
            help="as for 'parapipe run' (default: $PARAPIPE_ENGINE, else auto)",
        )
        if action == "save":
            parser.add_argument(
                "-o", "--output", required=True, metavar="FILE", help="the archive; - for stdout"
            )
        if action == "load":
            parser.add_argument("archive", metavar="FILE", help="an archive 'image save' wrote")


def image_command(request: ImageRequest) -> int:
    import anyio

    from parapipe.spec.load import load_pipeline

    pipeline = load_pipeline(request.spec)
    if request.action == "save" and request.archive == "-" and sys.stdout.isatty():
        raise UsageError("image save -o -: stdout is a terminal; redirect it to a file")
    return anyio.run(_image_action, request, pipeline)


async def _image_action(request: ImageRequest, pipeline: Pipeline) -> int:
    from parapipe.engine.registry import choose_engine
    from parapipe.run import image_archive

    engine, _ = await choose_engine(request.engine)
    if request.action in ("save", "load") and (refusal := engine.archive_refusal()):
        raise UsageError(refusal)
    if request.action == "id":
        plan = await image_archive.plan_here(engine, pipeline, _log)
        print(plan.tag)
    elif request.action == "build":
        ready = await image_archive.ensure_image(engine, pipeline, _log)
        what = "built" if ready.built else "is there, nothing to build:"
        print(f"{what} {ready.plan.tag} ({ready.image_id})")
    elif request.action == "save":
        await _save(request.archive, engine, pipeline)
    else:
        ready = await image_archive.load(engine, pipeline, Path(request.archive), _log)
        print(f"loaded {ready.plan.tag} ({ready.image_id}): the image {pipeline.spec_path} plans")
    return ExitCode.OK


async def _save(target: str, engine: Engine, pipeline: Pipeline) -> None:
    import anyio

    from parapipe.run import image_archive

    if target == "-":
        ready = await image_archive.save(engine, pipeline, sys.stdout.buffer, _log)
        _log(f"parapipe: saved {ready.plan.tag} to stdout")
        return
    path = Path(target)
    partial = path.with_name(path.name + ".partial")  # never a torn archive under its own name
    try:
        destination: IO[bytes] = partial.open("wb")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the archive: {exc.strerror or exc}") from None
    try:
        with destination:
            ready = await image_archive.save(engine, pipeline, destination, _log)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    size = (await anyio.Path(path).stat()).st_size / 2**20
    print(f"saved {ready.plan.tag} ({ready.image_id}) to {path} ({size:.1f} MiB)")


def _log(line: str) -> None:
    """Build and pull output goes to stderr: stdout carries the answer (`image id`'s tag)."""
    print(line, file=sys.stderr, flush=True)
