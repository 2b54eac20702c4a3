"""Shells where steps failed (`parapipe run -i`) and in a step's setting (`parapipe shell`).

With `-i` every step runs in a container of its own, and one that exits non-zero is kept by the
engine as an image (`kept_image_tag`) before its container goes; a cancelled or timed-out step
is not. Once the run has settled, `offer_shells` names each failed step in turn, opens a shell
in its kept filesystem on request, and removes every kept image at the end, however it ends
(Ctrl-C included), unless they are to be kept. The run's own exit code is returned unchanged.

The engine's calls run in `anyio.run` one at a time, so that between them parapipe's terminal
and its Ctrl-C are plain Python's: `input()` and `KeyboardInterrupt`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from parapipe.engine.api import CacheVolume, Engine, ShellRun, cache_volume_name, kept_image_tag
from parapipe.model import LABEL_PIPELINE, Pipeline, RunResult, Status, Step

Ask = Callable[[str], str]  # input(): raises EOFError when the terminal is gone
Say = Callable[[str], None]


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


def banner(kept: KeptStep, number: int, total: int) -> list[str]:
    """What is said before the shell of `kept` opens (or is offered)."""
    code = "unknown" if kept.exit_code is None else str(kept.exit_code)
    return [
        f"parapipe: [{number}/{total}] step {kept.name!r} failed with exit {code}",
        f"parapipe:   command: {kept.command or '(see its log)'}",
        "parapipe:   the shell opens in its container as it stopped: its workdir, env, secrets,"
        " caches and its needs' outputs are in place",
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
    secrets: Callable[[Step], Mapping[str, str]],
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
    secrets: Callable[[Step], Mapping[str, str]],
    shell: tuple[str, ...],
    ask: Ask,
    say: Say,
) -> None:
    for number, step in enumerate(kept, start=1):
        for line in banner(step, number, len(kept)):
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
        spec_step = pipeline.steps[step.name]
        run = shell_run(
            pipeline,
            spec_step,
            step.image_id,
            run_id=result.run_id,
            secrets=secrets(spec_step),
            shell=shell,
        )
        code = anyio.run(engine.shell, run)
        say(f"parapipe: left the shell of {step.name!r} (exit {code})")
