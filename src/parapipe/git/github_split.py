"""`export github --split` builds the pipeline image once: a first job builds it and hands it
on, and every step job loads it instead of building it again.

- By default the hand-off is an artifact: `parapipe image save` writes the image and its base
  to one compressed archive, and each step job downloads it and runs `parapipe image load`,
  which refuses (exit 2) an image that is not the one the job's checkout plans.
- With `--registry REF`, the image job pushes the image and its base to `REF/<pipeline>` (on
  GitHub's token, `packages: write` on that job only) and each step job pulls them, then checks
  that `parapipe image id` plans the tag it was given.

Each step job keeps its step cache (`.parapipe/cache/`) in `actions/cache`, keyed by the image's
tag, the step and the spec, so an unchanged step is restored on CI as it is locally. The
archive lives in the runner's temp folder, never in the checkout, where it would become one of
the image's source files.
"""

from __future__ import annotations

import re
from typing import Any, Final

from parapipe.errors import UsageError
from parapipe.git.github_export import (
    DOWNLOAD,
    UPLOAD,
    _command,
    _FlowList,
    _run,
    _setup,
    github_workflow,
)
from parapipe.model import Pipeline
from parapipe.run.image_plan import repository_name

CACHE: Final = "actions/cache@v5"
LOGIN: Final = "docker/login-action@v4"
IMAGE_ARTIFACT: Final = "parapipe-image"
ARCHIVE: Final = "${{ runner.temp }}/parapipe-image.tar.zst"
STEP_CACHE: Final = ".parapipe/cache/"  # the step cache: steps/ (entries) and latest/
IMAGE_JOB: Final = "image"
# A registry and repository path as Docker names it, without a tag: host[:port]/path.
_REGISTRY: Final = re.compile(
    r"[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+"
)


def split_workflow(pipeline: Pipeline, *, install: str = "", registry: str = "") -> str:
    """The `--split` workflow in which the image is built once; `registry`: push it there."""
    if registry and not _REGISTRY.fullmatch(registry):
        raise UsageError(
            f"--registry {registry!r}: give a registry and repository path in lower case,"
            " without a tag, such as ghcr.io/owner/repo"
        )
    flags = f" --registry {registry}" if registry else ""

    def build_once(jobs: dict[str, Any], spec: str, install_command: str) -> dict[str, Any]:
        return with_image_job(pipeline, jobs, spec=spec, install=install_command, registry=registry)

    return github_workflow(
        pipeline, split=True, install=install, extend_split=build_once, flags=flags
    )


def with_image_job(
    pipeline: Pipeline, jobs: dict[str, Any], *, spec: str, install: str, registry: str = ""
) -> dict[str, Any]:
    """`jobs` (one per step, from `github_export`) behind a first job that builds the image:
    each needs it, gets the image before its run, and keeps its step cache."""
    image_job = _image_job_id(jobs)
    built: dict[str, Any] = {image_job: _image_job(pipeline, spec, install, registry)}
    for name, job in jobs.items():
        # `needs` (and `permissions`) right after `runs-on`, where the other jobs have them.
        head = {key: job[key] for key in ("name", "runs-on") if key in job}
        head["needs"] = _FlowList([image_job, *job.get("needs", [])])
        if registry:
            head["permissions"] = {"contents": "read", "packages": "read"}
        job = head | {key: value for key, value in job.items() if key not in head}
        get_image = (
            _pull_steps(pipeline, spec, image_job, registry) if registry else _load_steps(spec)
        )
        steps = list(job["steps"])
        run_at = _run_step_index(steps, name)
        cache = _step_cache(pipeline, name, spec, image_job, matrix="strategy" in job)
        steps[run_at:run_at] = [*get_image, cache]
        job["steps"] = steps
        built[name] = job
    return built


def _image_job(pipeline: Pipeline, spec: str, install: str, registry: str) -> dict[str, Any]:
    build = _command("parapipe", "image", "build", "-f", spec)
    planned = _command("parapipe", "image", "id", "-f", spec)
    output = 'echo "tag=$tag" >> "$GITHUB_OUTPUT"'
    steps: list[dict[str, Any]] = list(_setup(install))
    job: dict[str, Any] = {"name": "image", "runs-on": "ubuntu-latest"}
    if registry:
        job["permissions"] = {"contents": "read", "packages": "write"}
        steps.append(_login(registry))
        lines = [build, f'tag="$({planned})"', *_push(pipeline), output]
        steps.append(
            {
                "name": "Build the pipeline image and push it",
                "id": "image",
                "env": {"REMOTE": _remote(pipeline, registry)},
                **_run("\n".join(lines)),
            }
        )
    else:
        save = _command("parapipe", "image", "save", "-f", spec, "-o") + f' "{ARCHIVE}"'
        lines = [build, f'tag="$({planned})"', output]
        steps.append({"name": "Build the pipeline image", "id": "image", **_run("\n".join(lines))})
        steps.append({"name": "Save it with its base", **_run(save)})
        steps.append(
            {
                "name": "Hand it on",
                "uses": UPLOAD,
                "with": {
                    "name": IMAGE_ARTIFACT,
                    "path": ARCHIVE,
                    "retention-days": 1,
                    "compression-level": 0,  # zstd already did it
                },
            }
        )
    job["outputs"] = {"tag": "${{ steps.image.outputs.tag }}"}
    job["steps"] = steps
    return job


def _push(pipeline: Pipeline) -> list[str]:
    """Shell lines that push the image (and its base) under the content hash of its tag."""
    lines = [
        'hash="${tag##*:}"',
        'docker tag "$tag" "$REMOTE:$hash"',
        'docker push "$REMOTE:$hash"',
    ]
    base = pipeline.image.origin
    if isinstance(base, str):
        # Each on a line of its own: `bash -e` does not stop at a failure left of `&&`.
        lines.append(f'docker tag {_command(base)} "$REMOTE:$hash-base"')
        lines.append('docker push "$REMOTE:$hash-base"')
    return lines


def _load_steps(spec: str) -> list[dict[str, Any]]:
    load = _command("parapipe", "image", "load", "-f", spec) + f' "{ARCHIVE}"'
    return [
        {
            "name": "Get the pipeline image",
            "uses": DOWNLOAD,
            "with": {"name": IMAGE_ARTIFACT, "path": "${{ runner.temp }}"},
        },
        {"name": "Load it (refused unless it is the image this checkout plans)", **_run(load)},
    ]


def _pull_steps(
    pipeline: Pipeline, spec: str, image_job: str, registry: str
) -> list[dict[str, Any]]:
    lines = [
        'hash="${TAG##*:}"',
        'docker pull "$REMOTE:$hash"',
        'docker tag "$REMOTE:$hash" "$TAG"',
    ]
    base = pipeline.image.origin
    if isinstance(base, str):
        lines.append('docker pull "$REMOTE:$hash-base"')
        lines.append(f'docker tag "$REMOTE:$hash-base" {_command(base)}')
    planned = _command("parapipe", "image", "id", "-f", spec)
    lines.append(
        f'planned="$({planned})"\n'
        'if [ "$planned" != "$TAG" ]; then\n'
        '  echo "::error::this checkout plans $planned, the image job built $TAG"; exit 2\n'
        "fi"
    )
    return [
        _login(registry),
        {
            "name": "Pull the pipeline image",
            "env": {
                "REMOTE": _remote(pipeline, registry),
                "TAG": f"${{{{ needs.{image_job}.outputs.tag }}}}",
            },
            **_run("\n".join(lines)),
        },
    ]


def _step_cache(
    pipeline: Pipeline, step: str, spec: str, image_job: str, *, matrix: bool = False
) -> dict[str, Any]:
    tag = f"${{{{ needs.{image_job}.outputs.tag }}}}"
    # Each instance of a matrix job keeps its own cache: under one key only the first instance
    # to finish would be saved, and every other instance would restore that one's results.
    instance = "-${{ strategy.job-index }}" if matrix else ""
    prefix = f"parapipe-{repository_name(pipeline.name)}-{step}{instance}-{tag}-"
    quoted_spec = spec.replace("'", "''")  # a string in a GitHub expression
    return {
        "name": f"Step cache of {step}",
        "uses": CACHE,
        "with": {
            "path": STEP_CACHE,
            "key": f"{prefix}${{{{ hashFiles('{quoted_spec}') }}}}",
            "restore-keys": prefix,
        },
    }


def _login(registry: str) -> dict[str, Any]:
    return {
        "name": "Log in to the registry",
        "uses": LOGIN,
        "with": {
            "registry": registry.split("/", 1)[0],
            "username": "${{ github.actor }}",
            "password": "${{ secrets.GITHUB_TOKEN }}",
        },
    }


def _remote(pipeline: Pipeline, registry: str) -> str:
    return f"{registry}/{repository_name(pipeline.name)}"


def _image_job_id(jobs: dict[str, Any]) -> str:
    """`image`, unless a step already has that name."""
    job_id = IMAGE_JOB
    while job_id in jobs:
        job_id = f"parapipe-{job_id}"
    return job_id


def _run_step_index(steps: list[dict[str, Any]], step: str) -> int:
    """Where the job runs its step: the image and the cache must be in place before it."""
    for index, job_step in enumerate(steps):
        if job_step.get("name") == f"Run {step}":
            return index
    raise AssertionError(f"the job of step {step!r} has no 'Run {step}'")
