"""Services in an exported GitHub Actions workflow.

In both export modes a job runs `parapipe run`, and every step runs in a container parapipe
starts on the runner's Docker; so do its services, each on a network private to its step, as
on a laptop. GitHub's own `services:` are not used: they run on the job's network, which the
step's container is not on, they are shared by every step of the job (parapipe's are per step),
and a service without `image` runs the pipeline image, which is in no registry (every job
builds it). What the job needs is the services' images on the runner, since parapipe never
pulls a service's image: a step pulls each one that is not there yet.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from parapipe.model import Pipeline


def service_images(pipeline: Pipeline, steps: Iterable[str]) -> list[str]:
    """The images of the services of `steps` (not the pipeline image), in file order."""
    wanted = {service for step in steps for service in pipeline.steps[step].services}
    images: list[str] = []
    for name, service in pipeline.services.items():
        if name in wanted and service.image is not None and service.image not in images:
            images.append(service.image)
    return images


def pull_service_images(pipeline: Pipeline, steps: Iterable[str]) -> list[dict[str, Any]]:
    """The job step that puts the services' images on the runner; none when there are none."""
    images = service_images(pipeline, steps)
    if not images:
        return []
    lines = [
        f"docker image inspect {shlex.quote(image)} >/dev/null 2>&1"
        f" || docker pull {shlex.quote(image)}"
        for image in images
    ]
    return [{"name": "Pull the services' images", "run": "\n".join(lines) + "\n"}]


def service_secrets(pipeline: Pipeline, steps: Iterable[str]) -> set[str]:
    """The secrets the services of `steps` take, for the job step that runs parapipe."""
    return {
        secret
        for step in steps
        for service in pipeline.steps[step].services
        for secret in pipeline.services[service].secrets
    }
