"""The services of a step, as the engine gets them: their images resolved to ids, their env
and secrets, and a log each (`<step>.services/<service>.log`, secrets masked); and what of
them the step cache's key depends on."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO

from parapipe.engine.api import Engine, LineSink, ServiceRun
from parapipe.errors import ServiceFailed
from parapipe.model import Pipeline, Service, Step
from parapipe.run.secrets import Secrets
from parapipe.run.state.run_folder import RunFolder


class StepServices:
    def __init__(
        self, pipeline: Pipeline, engine: Engine, folder: RunFolder, secrets: Secrets
    ) -> None:
        self.pipeline = pipeline
        self.engine = engine
        self.folder = folder
        self.secrets = secrets

    def of(self, step: Step) -> list[Service]:
        return [self.pipeline.services[name] for name in step.services]

    async def image_ids(self, step: Step, pipeline_image_id: str) -> dict[str, str]:
        """The image id of each service of `step`; `ServiceFailed` for an image that is not
        there (a service's image is never pulled)."""
        ids: dict[str, str] = {}
        for service in self.of(step):
            if service.image is None:
                ids[service.name] = pipeline_image_id
                continue
            image_id = await self.engine.service_image(service.image)
            if not image_id:
                raise ServiceFailed(
                    f"service '{service.name}': no image {service.image!r} in"
                    f" {self.engine.name} (a service's image is never pulled: build, load or"
                    " seed it first)"
                )
            ids[service.name] = image_id
        return ids

    def key_parts(self, step: Step, image_ids: Mapping[str, str]) -> list[dict[str, Any]]:
        """What the step's result may depend on in its services: image, run, env, readiness
        and secrets (as fingerprints, never values)."""
        return [
            {
                "service": service.name,
                "image": image_ids[service.name],
                "run": list(service.run),
                "env": dict(service.env),
                "ready": None
                if service.ready is None
                else [service.ready.run, service.ready.timeout, service.ready.interval],
                "secrets": sorted(self.secrets.fingerprints(service).items()),
            }
            for service in self.of(step)
        ]

    @contextmanager
    def runs(
        self, step: Step, image_ids: Mapping[str, str], logs: Path | None = None
    ) -> Iterator[tuple[ServiceRun, ...]]:
        """The services of `step` for the engine, each with its log open meanwhile, in `logs`
        (default: the run folder's `<step>.services/`)."""
        services = self.of(step)
        if not services:
            yield ()
            return
        folder = logs or self.folder.services_dir(step.name)
        folder.mkdir(parents=True, exist_ok=True)
        with ExitStack() as files:
            runs = []
            for service in services:
                log_file = files.enter_context(self.folder.open_log(folder / f"{service.name}.log"))
                secrets = self.secrets.for_step(service)
                runs.append(
                    ServiceRun(
                        name=service.name,
                        image_id=image_ids[service.name],
                        commands=service.run,
                        env={n: v for n, v in service.env.items() if n not in secrets},
                        secrets=secrets,
                        ready=service.ready,
                        log=_masked_sink(log_file, self.secrets),
                    )
                )
            yield tuple(runs)


def _masked_sink(log_file: TextIO, secrets: Secrets) -> LineSink:
    """As a step's log: every secret masked, whichever service or step it belongs to."""
    redact = secrets.redact

    def sink(line: str) -> None:
        log_file.write(redact(line) + "\n")

    return sink
