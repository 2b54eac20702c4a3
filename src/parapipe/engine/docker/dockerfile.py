"""The Dockerfile of the pipeline image and its parts, as pure functions, for the Docker and
Podman builders (`stages.py` splits it into the source stage and setup).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from parapipe.engine.api import cache_volume_name
from parapipe.engine.build_context import (
    CONTEXT_CA_BUNDLE,
    CONTEXT_PREPARE,
    CONTEXT_SOURCE,
    prepare_command,
    setup_command,
)
from parapipe.model import CA_BUNDLE_PATH, ImagePlan


def dockerfile_text(plan: ImagePlan, *, cache_mounts: bool = False, base: str = "") -> str:
    """The Dockerfile of the pipeline image, for a context made by `write_build_context`.

    Values are quoted for the Dockerfile parser (which expands `$` in ENV, LABEL and WORKDIR);
    RUN and COPY use the JSON form, which has no shell quoting at all. The stages go in the
    order they change least often (base, prepare, source, setup), so the builder's layer cache
    keeps `prepare` across source edits. `cache_mounts` (BuildKit and Buildah) mounts
    `image.caches` while prepare and setup run; they never become part of a layer. `base`
    names the base image for BuildKit, which cannot start `FROM` an image id.
    """
    mounts = cache_mount_flags(plan) if cache_mounts else ""
    lines = [f"# parapipe {plan.tag}", *base_lines(plan, base)]
    if plan.prepare:
        lines.append("COPY " + json.dumps([f"{CONTEXT_PREPARE}/", "./"]))
        for number, command in enumerate(plan.prepare, start=1):
            argv = prepare_command(number, command, plan.prepare_env)
            lines.append("RUN " + mounts + json.dumps(argv))
    # Relative to WORKDIR, so the path is not written (and expanded) a second time.
    lines.append("COPY " + json.dumps([f"{CONTEXT_SOURCE}/", "./"]))
    for number, command in enumerate(plan.setup, start=1):
        lines.append("RUN " + mounts + json.dumps(setup_command(number, command)))
    if plan.inputs_label:  # last: it changes with every edit
        lines.append("LABEL " + assignments(plan.inputs_label))
    return "\n".join(lines) + "\n"


def base_lines(plan: ImagePlan, base: str = "") -> list[str]:
    """The Dockerfile's lines before `prepare`: base, labels, CA, env and workdir."""
    lines = [f"FROM {base or plan.base_id}"]
    if plan.labels:
        lines.append("LABEL " + assignments(plan.labels))
    if plan.ca_bundle is not None:
        lines.append("COPY " + json.dumps([CONTEXT_CA_BUNDLE, CA_BUNDLE_PATH]))
    if plan.env:
        lines.append("ENV " + assignments(plan.env, quote_names=False))
    lines.append("WORKDIR " + dockerfile_quote(plan.workdir))
    return lines


def cache_mount_flags(plan: ImagePlan) -> str:
    """`--mount=type=cache,…` flags for `image.caches`, one per cache, ending in a space.

    The id is the volume name steps' `caches` use, so the builder's cache is per pipeline and
    cache name. Fields are CSV, as BuildKit and Buildah read them: quoted when they need it.
    """
    flags = []
    for cache, path in sorted(plan.caches.items()):
        fields = ["type=cache", f"target={path}", f"id={cache_volume_name(plan.pipeline, cache)}"]
        quoted_fields = [
            f'"{f.replace(chr(34), chr(34) * 2)}"' if "," in f or '"' in f else f for f in fields
        ]
        flags.append("--mount=" + ",".join(quoted_fields) + " ")
    return "".join(flags)


def dockerfile_quote(value: str) -> str:
    """`value` as a double-quoted Dockerfile word: `\\`, `"` and `$` escaped, nothing expanded.

    Line breaks cannot be quoted in a Dockerfile; `plan_image` rejects them earlier.
    """
    if "\n" in value or "\r" in value:
        raise ValueError("a Dockerfile word cannot contain a line break")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def assignments(pairs: Mapping[str, str], *, quote_names: bool = True) -> str:
    return " ".join(
        f"{dockerfile_quote(name) if quote_names else name}={dockerfile_quote(value)}"
        for name, value in pairs.items()
    )
