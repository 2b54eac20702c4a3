"""An in-memory engine for fast scheduler and runner tests. It never replaces the Docker tests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio

from parapipe.engine.api import Engine, LineSink, RemovedImages, ShellRun, StepRun, kept_image_tag
from parapipe.errors import EngineError, ImageBuildFailed, OutputError, ServiceFailed, UsageError
from parapipe.model import ImagePlan, ImageSpec


@dataclass
class FakeStep:
    """How a fake step behaves: what it prints, when it may finish, how it exits."""

    exit_code: int = 0
    exit_codes_by_attempt: tuple[int, ...] = ()  # overrides exit_code for attempts 1, 2, ...
    output: tuple[str, ...] = ()
    release: anyio.Event | None = None  # the step waits for this before finishing
    engine_error: str | None = None  # raise EngineError instead of exiting
    files: dict[str, str] = field(default_factory=dict)  # what it writes, by path in the workdir
    service_failure: str | None = None  # a service of it fails so: ServiceFailed, nothing runs
    started: anyio.Event = field(default_factory=anyio.Event)
    finished: anyio.Event = field(default_factory=anyio.Event)
    cancelled: bool = False


class FakeEngine(Engine):
    name = "fake"

    def __init__(self, steps: Mapping[str, FakeStep] | None = None, *, setup_fails: bool = False):
        self.steps = dict(steps or {})
        self.setup_fails = setup_fails
        self.events: list[
            tuple[str, str]
        ] = []  # ("start" | "end", step), in the order they happened
        self.images: dict[str, str] = {}
        self.builds = 0
        self.running = 0
        self.most_running = 0
        self.runs: list[StepRun] = []
        self.swept: list[str] = []
        self.shells: list[ShellRun] = []  # every shell opened, in order
        self.shell_exit_code = 0
        self.pruned: list[tuple[str, int, frozenset[str]]] = []  # remove_old_images calls
        self.labels: dict[str, dict[str, str]] = {}  # by image id
        # Service images by reference; one not here is missing (a service's is never pulled).
        self.service_images: dict[str, str] = {}

    async def check(self) -> None:
        pass

    async def resolve_base(self, image: ImageSpec, log: LineSink) -> str:
        if not isinstance(image.origin, str):
            return "sha256:base-of-dockerfile"
        # Found, else "pulled": the base is then an image like any other (archives carry it).
        return self.images.setdefault(image.origin, f"sha256:base-of-{image.origin}")

    async def find_image(self, tag: str) -> str | None:
        return self.images.get(tag)

    async def service_image(self, ref: str) -> str:
        return self.service_images.get(ref, "")

    async def build_image(self, plan: ImagePlan, log: LineSink) -> str:
        self.builds += 1
        for command in plan.setup:
            log(f"$ {command}")
            if self.setup_fails:
                raise ImageBuildFailed(f"setup command failed with exit 1: {command}")
        self.images[plan.tag] = f"sha256:{len(self.images) + 1:064d}"
        self.labels[self.images[plan.tag]] = {**plan.labels, **plan.inputs_label}
        return self.images[plan.tag]

    async def remove_old_images(
        self, pipeline: str, *, keep: int, keep_ids: frozenset[str] = frozenset()
    ) -> RemovedImages:
        self.pruned.append((pipeline, keep, keep_ids))
        return RemovedImages()

    async def run_step(self, run: StepRun, log: LineSink) -> int:
        behaviour = self.steps.setdefault(run.step, FakeStep())
        self.runs.append(run)
        self.events.append(("start", run.step))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        behaviour.started.set()
        try:
            for service in run.services:
                service.log(f"fake service {service.name} of {run.step} is up")
            if behaviour.service_failure is not None:
                raise ServiceFailed(behaviour.service_failure)
            for line in behaviour.output:
                log(line)
            if behaviour.release is not None:
                await behaviour.release.wait()
            else:
                await anyio.lowlevel.checkpoint()
            if behaviour.engine_error:
                raise EngineError(behaviour.engine_error)
            if run.attempt <= len(behaviour.exit_codes_by_attempt):
                exit_code = behaviour.exit_codes_by_attempt[run.attempt - 1]
            else:
                exit_code = behaviour.exit_code
            if exit_code == 0 and run.outputs:
                self._hand_out(run, behaviour)
            if exit_code != 0 and run.keep_failed:
                self.images[kept_image_tag(run.run_id, run.step)] = f"sha256:kept-{run.step}"
            return exit_code
        except anyio.get_cancelled_exc_class():
            behaviour.cancelled = True
            raise
        finally:
            self.running -= 1
            self.events.append(("end", run.step))
            behaviour.finished.set()

    def _hand_out(self, run: StepRun, behaviour: FakeStep) -> None:
        assert run.outputs_dir is not None
        for output in run.outputs:
            made = {
                p: c
                for p, c in behaviour.files.items()
                if p == output or p.startswith(output + "/")
            }
            if not made:
                raise OutputError(f"step {run.step!r} did not produce its output '{output}'")
            for path, content in made.items():
                target = run.outputs_dir / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)

    async def remove_containers(self, run_id: str) -> None:
        self.swept.append(run_id)

    def shell_refusal(self) -> str | None:
        return None

    async def shell(self, run: ShellRun) -> int:
        self.shells.append(run)
        return self.shell_exit_code

    async def remove_images(self, image_ids: Sequence[str]) -> None:
        self.images = {tag: i for tag, i in self.images.items() if i not in image_ids}

    # Archives: the tags, ids and labels of the images, as JSON.

    def archive_refusal(self) -> str | None:
        return None

    async def save_images(self, references: Sequence[str], destination: IO[bytes]) -> None:
        missing = [ref for ref in references if ref not in self.images]
        if missing:
            raise UsageError(f"fake: no such image: {missing[0]}")
        saved = {
            ref: [self.images[ref], self.labels.get(self.images[ref], {})] for ref in references
        }
        destination.write(json.dumps(saved).encode())

    async def load_images(self, archive: Path) -> list[str]:
        try:
            saved = json.loads(await anyio.Path(archive).read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{archive}: fake cannot load it: {exc}") from None
        for ref, (image_id, labels) in saved.items():
            self.images[ref] = image_id
            self.labels[image_id] = labels
        return list(saved)

    async def image_labels(self, reference: str) -> dict[str, str]:
        return dict(self.labels.get(self.images.get(reference, ""), {}))

    async def tag_image(self, image_id: str, reference: str) -> None:
        self.images[reference] = image_id

    async def untag_images(self, references: Sequence[str]) -> None:
        for reference in references:
            self.images.pop(reference, None)
