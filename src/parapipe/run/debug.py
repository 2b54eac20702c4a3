"""Shells where steps failed (`parapipe run -i`) and in a step's setting (`parapipe shell`).

With `-i` every step runs in a container of its own, and one that exits non-zero is kept by the
engine as an image (`kept_image_tag`) before its container goes; a cancelled or timed-out step
is not. Once the run has settled, `offer_shells` names each failed step in turn, opens a shell
in its kept filesystem on request, and removes every kept image at the end, however it ends
(Ctrl-C included), unless they are to be kept. The run's own exit code is returned unchanged.

The engine's calls run in `anyio.run` one at a time, so that between them parapipe's terminal
and its Ctrl-C are plain Python's: `input()` and `KeyboardInterrupt`.

A step with services gets fresh instances of them in its shell (`open_step_shell`): those of
the failed run are gone by then, with whatever the step left in them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import anyio

from parapipe.engine.api import CacheVolume, Engine, ShellRun, cache_volume_name, kept_image_tag
from parapipe.errors import ServiceFailed
from parapipe.model import LABEL_PIPELINE, Pipeline, RunResult, Service, Status, Step
from parapipe.run.secrets import Secrets
from parapipe.run.services import StepServices
from parapipe.run.state.run_folder import RunFolder, ignore_state_dir

Ask = Callable[[str], str]  # input(): raises EOFError when the terminal is gone
Say = Callable[[str], None]
# The secrets of a step or of a service, by name (`Secrets.for_step`).
StepSecrets = Callable[[Step | Service], Mapping[str, str]]


@dataclass(frozen=True, kw_only=True)
class KeptStep:
    """A failed step whose filesystem the engine kept as `image_id`."""

    name: str
    image_id: str
    command: str  # the command that failed, from its log; "" when the log does not say
    exit_code: int | None


def shell_run(
    pipeline: Pipeline,
    step: Step,
    image_id: str,
    *,
    run_id: str,
    secrets: Mapping[str, str],
    shell: tuple[str, ...] = (),
    inputs: tuple[Path, ...] = (),
) -> ShellRun:
    """A shell in `step`'s setting: its env (and the PARAPIPE_* a step sees), secrets, workdir
    and caches; `inputs` are its needs' outputs when the image does not hold them already."""
    env = {name: value for name, value in step.env.items() if name not in secrets}
    env.update(PARAPIPE_RUN_ID=run_id, PARAPIPE_STEP=step.name)
    return ShellRun(
        run_id=run_id,
        step=step.name,
        image_id=image_id,
        env=env,
        workdir=pipeline.image.workdir,
        labels={LABEL_PIPELINE: pipeline.name},
        shell=shell,
        inputs=inputs,
        secrets=secrets,
        caches=cache_volumes(pipeline, step),
    )


async def open_step_shell(
    engine: Engine,
    pipeline: Pipeline,
    step: Step,
    image_id: str,
    *,
    run_id: str,
    secrets: StepSecrets,
    pipeline_image_id: str,
    logs: Path,
    say: Say,
    shell: tuple[str, ...] = (),
    inputs: tuple[Path, ...] = (),
) -> int:
    """`step`'s shell (`shell_run`) beside fresh instances of its services, as a run starts
    them: each ready first (`say` tells it), its log in `logs/<service>.log`, and all gone when
    the shell closes. One that is never ready is `ServiceFailed`, and no shell opens.
    `pipeline_image_id` is the image of a service that names none."""
    run = shell_run(
        pipeline, step, image_id, run_id=run_id, secrets=secrets(step), shell=shell, inputs=inputs
    )
    if not step.services:
        return await engine.shell(run)
    values = dict(secrets(step))  # a service's log masks the step's secrets too, as in a run
    for name in step.services:
        values.update(secrets(pipeline.services[name]))
    started = StepServices(pipeline, engine, RunFolder(pipeline.state_dir, run_id), Secrets(values))
    image_ids = await started.image_ids(step, pipeline_image_id)
    shutil.rmtree(logs, ignore_errors=True)  # an earlier shell's: these logs are this one's
    try:
        with started.runs(step, image_ids, logs) as service_runs:
            return await engine.shell(replace(run, services=service_runs, say=say))
    except ServiceFailed as failed:
        raise ServiceFailed(
            f"{failed.message}: no shell opened (the services' logs: {logs})"
        ) from None


def shell_logs(pipeline: Pipeline, step: Step) -> Path:
    """Where `parapipe shell STEP` keeps the logs of the step's services, the last shell's only:
    `.parapipe/shells/<step>.services/`."""
    ignore_state_dir(pipeline.state_dir)
    return pipeline.state_dir / "shells" / f"{step.name}.services"


def open_kept_shell(
    engine: Engine,
    pipeline: Pipeline,
    result: RunResult,
    kept: KeptStep,
    *,
    secrets: StepSecrets,
    shell: tuple[str, ...],
    say: Say,
) -> int:
    """The shell of a failed step of `result`, in its kept filesystem: its services' logs in
    the run's folder, `<step>.shell.services/` (beside the run's own `<step>.services/`)."""
    image = result.image.image_id if result.image is not None else None
    opening = partial(
        open_step_shell,
        engine,
        pipeline,
        pipeline.steps[kept.name],
        kept.image_id,
        run_id=result.run_id,
        secrets=secrets,
        pipeline_image_id=image or kept.image_id,
        logs=result.run_dir / f"{kept.name}.shell.services",
        say=say,
        shell=shell,
    )
    return anyio.run(opening)


def cache_volumes(pipeline: Pipeline, step: Step) -> tuple[CacheVolume, ...]:
    return tuple(
        CacheVolume(
            name=cache_volume_name(pipeline.name, cache),
            pipeline=pipeline.name,
            cache=cache,
            path=path,
        )
        for cache, path in step.caches.items()
    )


def failed_command(log_path: Path | None) -> str:
    """The command a step's log shows last before `parapipe: exit N` (the step script's own
    lines, `$ COMMAND`)."""
    if log_path is None or not log_path.exists():
        return ""
    command = failed = ""
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("$ "):
            command = line[2:]
        elif line.startswith("parapipe: exit "):
            failed = command  # the last attempt's, when the step was retried
    return failed or command


def banner(kept: KeptStep, number: int, total: int, services: Sequence[str] = ()) -> list[str]:
    """What is said before the shell of `kept` opens (or is offered); `services`: the step's."""
    code = "unknown" if kept.exit_code is None else str(kept.exit_code)
    fresh = (
        [
            f"parapipe:   its services start afresh ({', '.join(services)}): the data the step"
            " left in them is not there"
        ]
        if services
        else []
    )
    return [
        f"parapipe: [{number}/{total}] step {kept.name!r} failed with exit {code}",
        f"parapipe:   command: {kept.command or '(see its log)'}",
        "parapipe:   the shell opens in its container as it stopped: its workdir, env, secrets,"
        " caches and its needs' outputs are in place",
        *fresh,
        "parapipe:   leave with `exit` (or Ctrl-D)",
    ]


async def find_kept(engine: Engine, result: RunResult) -> list[KeptStep]:
    """The failed steps the engine kept, in the order the run lists them."""
    kept: list[KeptStep] = []
    for name, step_result in result.steps.items():
        if step_result.status is not Status.FAILED:
            continue
        image_id = await engine.find_image(kept_image_tag(result.run_id, name))
        if image_id is not None:
            kept.append(
                KeptStep(
                    name=name,
                    image_id=image_id,
                    command=failed_command(step_result.log_path),
                    exit_code=step_result.exit_code,
                )
            )
    return kept


def offer_shells(
    engine: Engine,
    pipeline: Pipeline,
    result: RunResult,
    *,
    secrets: StepSecrets,
    shell: tuple[str, ...] = (),
    keep_images: bool = False,
    ask: Ask = input,
    say: Say = print,
) -> int:
    """Offer a shell in each failed step in turn; the run's exit code once the user is done."""
    kept = anyio.run(find_kept, engine, result)
    try:
        if not result.interrupted:
            _offer(engine, pipeline, result, kept, secrets, shell, ask, say)
    except KeyboardInterrupt:
        say("")  # the prompt's line was left open by the Ctrl-C
        raise
    finally:
        if keep_images:
            for step in kept:
                say(f"parapipe: kept the filesystem of {step.name!r} as image {step.image_id}")
        elif kept:
            # Said first: on a busy engine the removal takes a moment after a Ctrl-C.
            say(f"parapipe: removing the kept filesystem of {len(kept)} failed step(s)")
            anyio.run(engine.remove_images, [step.image_id for step in kept])
    return result.exit_code


def _offer(
    engine: Engine,
    pipeline: Pipeline,
    result: RunResult,
    kept: Sequence[KeptStep],
    secrets: StepSecrets,
    shell: tuple[str, ...],
    ask: Ask,
    say: Say,
) -> None:
    for number, step in enumerate(kept, start=1):
        for line in banner(step, number, len(kept), pipeline.steps[step.name].services):
            say(line)
        try:
            answer = ask(f"Open a shell in {step.name!r}? [Y]es, [s]kip it, [q]uit to the end: ")
        except EOFError:
            return
        answer = answer.strip().lower()
        if answer.startswith("q"):
            return
        if answer.startswith(("s", "n")):
            continue
        code = open_kept_shell(
            engine, pipeline, result, step, secrets=secrets, shell=shell, say=say
        )
        say(f"parapipe: left the shell of {step.name!r} (exit {code})")
