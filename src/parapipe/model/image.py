"""The pipeline image: what goes into it, and where the host CA lands in it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from parapipe.model.labels import LABEL_INPUTS, LABEL_PIPELINE

CA_BUNDLE_PATH = "/etc/parapipe/ca-certificates.crt"
CA_ENV_VARS = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
)


@dataclass(frozen=True, kw_only=True)
class SourceDelta:
    """The source stage built on an earlier one of the same pipeline: `previous` (its tag) with
    `removed` paths deleted (and `emptied` folders only they held), then `changed` copied."""

    previous: str
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    emptied: tuple[str, ...] = ()  # deepest first


@dataclass(frozen=True, kw_only=True)
class ImagePlan:
    """Everything that goes into the pipeline image, with its content hash already in `tag`."""

    tag: str  # parapipe/<pipeline>:<hash>; an existing tag means nothing needs building
    base_id: str  # the resolved base image (from `image.from`, or built from `image.build`)
    source: Path  # host folder the files are copied from
    files: tuple[str, ...]  # POSIX paths relative to source, already filtered, sorted
    workdir: str
    env: Mapping[str, str]  # image.env plus the CA variables when the host CA is trusted
    setup: tuple[str, ...]
    ca_bundle: Path | None  # host CA bundle copied to CA_BUNDLE_PATH, or None
    labels: Mapping[str, str]
    # `image.prepare`, run after the CA and env and before the source: the files it matched
    # (POSIX paths relative to source, sorted), its commands and their own env.
    prepare_files: tuple[str, ...] = ()
    prepare: tuple[str, ...] = ()
    prepare_env: Mapping[str, str] = field(default_factory=dict)
    # `image.caches`: cache name -> container path, mounted while prepare and setup run.
    caches: Mapping[str, str] = field(default_factory=dict)
    # A digest of each input, by name (`run.image_inputs`): not part of `labels`, which come
    # first in the image, as these change with every edit and would undo the layer cache.
    inputs: Mapping[str, str] = field(default_factory=dict)
    # The pre-setup stage (base, prepare, source) as an image of its own, tagged by its content
    # hash, so that the next edit can build on it ("" for engines that build in one go), and
    # how to make it: None for a full copy of the source.
    source_tag: str = ""
    delta: SourceDelta | None = None
    # The stage up to `prepare` (base, CA, env, prepare) tagged by the content hash of those
    # inputs, for engines that make it an image of its own (Docker's run-and-commit when no
    # client builds with BuildKit); "" without `prepare`.
    prepare_tag: str = ""

    @property
    def pipeline(self) -> str:
        """The pipeline's name, which cache volumes are scoped by."""
        return self.labels.get(LABEL_PIPELINE, "")

    @property
    def inputs_label(self) -> dict[str, str]:
        """`inputs` as the image's last label, `{LABEL_INPUTS: JSON}`; empty without them."""
        if not self.inputs:
            return {}
        return {LABEL_INPUTS: json.dumps(dict(self.inputs), sort_keys=True, separators=(",", ":"))}
