"""The Dockerfiles of the pipeline image in two images: the source stage (base, CA, env,
prepare, source), tagged `ImagePlan.source_tag`, and the pipeline image (`setup` on it).

The source stage is either a full copy of the source or a delta on an earlier source stage
(`ImagePlan.delta`): the removed paths deleted, folders only they held removed, the changed
files copied. Either way it holds the same files, so `setup` sees exactly the new source.
Pure functions, as `argv`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Final

from parapipe.engine.build_context import (
    CONTEXT_DELTA,
    CONTEXT_PREPARE,
    CONTEXT_SOURCE,
    setup_command,
)
from parapipe.engine.docker.dockerfile import (
    assignments,
    base_lines,
    cache_mount_flags,
    dockerfile_quote,
    dockerfile_text,
)
from parapipe.model import LABEL_SOURCE, ImagePlan

# `$1` paths to delete, then the folders to remove when nothing else is left in them (a folder
# `prepare` wrote into stays, as in a clean build). Relative to WORKDIR.
_DELTA_SCRIPT: Final = (
    'count=$1; shift; for path do if [ "$count" -gt 0 ]; then rm -f -- "$path";'
    ' count=$((count - 1)); else rmdir -- "$path" 2>/dev/null || true; fi; done'
)


def source_label(plan: ImagePlan) -> str:
    """The label naming the source stage by its content hash: the same on a delta and on a full
    copy, and inherited by the pipeline image either way."""
    return f"LABEL {LABEL_SOURCE}={dockerfile_quote(plan.source_tag.rpartition(':')[2])}"


def source_dockerfile(plan: ImagePlan, *, cache_mounts: bool, base: str = "") -> str:
    """The source stage as a full copy: the one-image Dockerfile without its setup."""
    # The inputs label goes on the pipeline image only: a source stage is reused when only the
    # setup changes, and its label would then name the old setup.
    stage = replace(plan, setup=(), inputs={})
    text = dockerfile_text(stage, cache_mounts=cache_mounts, base=base)
    return text + source_label(plan) + "\n"


def unprepared_dockerfile(plan: ImagePlan) -> str:
    """The prepare stage before its commands run (base, CA, env, workdir, the files `prepare`
    gets), for a context holding only those files: its commands then run in a container."""
    lines = [f"# parapipe {plan.prepare_tag} (before prepare)", *base_lines(plan)]
    lines.append("COPY " + json.dumps([f"{CONTEXT_PREPARE}/", "./"]))
    return "\n".join(lines) + "\n"


def prepared_source_dockerfile(plan: ImagePlan) -> str:
    """The source stage as a full copy on the committed prepare stage `plan.prepare_tag`."""
    lines = [f"# parapipe {plan.source_tag}", f"FROM {plan.prepare_tag}"]
    lines.append("COPY " + json.dumps([f"{CONTEXT_SOURCE}/", "./"]))
    return "\n".join([*lines, source_label(plan)]) + "\n"


def delta_dockerfile(plan: ImagePlan) -> str:
    """The source stage as a delta on `plan.delta.previous`, for a context holding the changed
    files under `delta/`."""
    delta = plan.delta
    if delta is None:
        raise ValueError("the plan has no delta")
    lines = [f"# parapipe {plan.source_tag} (delta)", f"FROM {delta.previous}"]
    if delta.removed or delta.emptied:
        argv = ["sh", "-c", _DELTA_SCRIPT, "parapipe-delta", str(len(delta.removed))]
        lines.append("RUN " + json.dumps([*argv, *delta.removed, *delta.emptied]))
    if delta.changed:
        lines.append("COPY " + json.dumps([f"{CONTEXT_DELTA}/", "./"]))
    lines.append(source_label(plan))
    return "\n".join(lines) + "\n"


def setup_dockerfile(plan: ImagePlan, *, cache_mounts: bool) -> str:
    """The pipeline image: `setup` on the source stage, with `image.caches` mounted where the
    builder can."""
    mounts = cache_mount_flags(plan) if cache_mounts else ""
    lines = [f"# parapipe {plan.tag}", f"FROM {plan.source_tag}"]
    for number, command in enumerate(plan.setup, start=1):
        lines.append("RUN " + mounts + json.dumps(setup_command(number, command)))
    if plan.inputs_label:  # last: it changes with every edit
        lines.append("LABEL " + assignments(plan.inputs_label))
    return "\n".join(lines) + "\n"
