"""`parapipe shell STEP`, and what `parapipe run -i` adds to a run: a terminal checked up front,
then the failed steps' shells once the run has settled (`run.debug`)."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from parapipe.cli.requests import ShellRequest
from parapipe.errors import UsageError

if TYPE_CHECKING:
    from parapipe.engine.api import Engine, LineSink
    from parapipe.model import Pipeline, RunResult, Step
    from parapipe.run.secrets import Secrets


@dataclass(frozen=True, kw_only=True)
class ShellChoice:
    """`run -i`'s `--shell` and `--keep-failed`."""

    shell: tuple[str, ...] = ()
    keep_failed: bool = False


def check_interactive(output: str) -> None:
    """`-i` is refused before anything runs where no one could answer it."""
    if output == "github":
        raise UsageError("-i/--interactive is never used with --output github")
    check_terminal("-i/--interactive")


def check_terminal(what: str) -> None:
    if not sys.stdin.isatty():
        raise UsageError(f"{what} needs a terminal on stdin, and stdin is not one")


def offer_shells_after(
    engine: Engine, pipeline: Pipeline, result: RunResult, run_secrets: Secrets, shells: ShellChoice
) -> int:
    from parapipe.run.debug import offer_shells

    return offer_shells(
        engine,
        pipeline,
        result,
        secrets=run_secrets.for_step,
        shell=shells.shell,
        keep_images=shells.keep_failed,
        say=lambda line: print(line, flush=True),
    )


def shell_command(request: ShellRequest) -> int:
    from parapipe.graph import select_steps
    from parapipe.run.left_out_needs import find_left_out_outputs
    from parapipe.run.secrets import parse_secret_flags, resolve_secrets
    from parapipe.spec.load import load_pipeline

    check_terminal("parapipe shell")
    pipeline = load_pipeline(request.spec)
    names = select_steps(pipeline, (request.step,), with_needs=False)  # an unknown step: exit 2
    if len(names) != 1:
        raise UsageError(
            f"parapipe shell: step {request.step!r} is a matrix of {len(names)} instances:"
            f" name one, such as {names[0]!r}"
        )
    step = pipeline.steps[names[0]]
    given = parse_secret_flags(request.secret_flags, request.secret_file_flags)
    services = [pipeline.services[name] for name in step.services]
    step_secrets = resolve_secrets([step, *services], given, os.environ)
    brought_in = find_left_out_outputs(pipeline, [step.name])
    with tempfile.TemporaryDirectory(prefix="parapipe-shell-") as staging:
        inputs = tuple(
            _handed_on(pipeline, need, brought_in[need].outputs, Path(staging))
            for need in step.needs
            if need in brought_in
        )
        return _open_shell(request, pipeline, step, step_secrets, inputs)


def _handed_on(pipeline: Pipeline, need: str, outputs: Path, staging: Path) -> Path:
    """`outputs` laid out as they land in the step's workdir: a matrix instance's under
    `<step>/<values>/`, as a run hands them on."""
    from parapipe.model import handoff_folder

    folder = handoff_folder(pipeline.steps[need].matrix)
    if not folder:
        return outputs
    shutil.copytree(outputs, staging / need / folder, symlinks=True)
    return staging / need


def _open_shell(
    request: ShellRequest,
    pipeline: Pipeline,
    step: Step,
    step_secrets: Secrets,
    inputs: tuple[Path, ...],
) -> int:
    import anyio

    from parapipe.engine.registry import choose_engine
    from parapipe.run.debug import open_step_shell, shell_logs

    async def open_shell() -> int:
        engine, _ = await choose_engine(request.engine)
        if (refusal := engine.shell_refusal()) is not None:
            raise UsageError(f"parapipe shell: {refusal}")
        image_id = await pipeline_image(engine, pipeline)
        return await open_step_shell(
            engine,
            pipeline,
            step,
            image_id,
            run_id=f"shell-{secrets.token_hex(4)}",
            secrets=step_secrets.for_step,
            pipeline_image_id=image_id,
            logs=shell_logs(pipeline, step),
            say=lambda line: print(line, file=sys.stderr, flush=True),
            shell=request.shell,
            inputs=inputs,
        )

    return anyio.run(open_shell)


async def pipeline_image(engine: Engine, pipeline: Pipeline) -> str:
    """The pipeline image as a run would use it: reused when its tag exists, else built (its
    output on stderr)."""
    import anyio

    from parapipe.run.image_plan import plan_image

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    sink: LineSink = log
    base_id = await engine.resolve_base(pipeline.image, sink)
    plan = await anyio.to_thread.run_sync(plan_image, pipeline, base_id)
    found = await engine.find_image(plan.tag)
    if found is not None:
        return found
    print(f"parapipe: building {plan.tag}", file=sys.stderr, flush=True)
    return await engine.build_image(plan, sink)
