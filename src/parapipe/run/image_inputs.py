"""A digest of each input of the pipeline image, and which of them differ between two images.

The image's tag is one hash of everything that went in (`image_plan`), which says *that* an
image differs but not *why*. Each input also gets a short digest of its own, written into the
image as a label (`ImagePlan.inputs_label`), so that `parapipe image load` can name what differs
between an archive's image and the one this spec plans here: the base, the files, the setup...
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from parapipe.model import ImageSpec

SHORT: Final = 16  # hex characters of a part's digest: enough to tell two apart

# What each input is, in words, in the order a mismatch lists them.
DESCRIPTIONS: Final = {
    "format": "the image format of parapipe's version",
    "base": "the base image",
    "name": "the pipeline's name",
    "workdir": "image.workdir",
    "env": "image.env (with the host CA variables)",
    "prepare": "image.prepare and image.caches (commands, env, files)",
    "setup": "image.setup",
    "ca": "the host CA bundle",
    "files": "the source files",
}


def input_digests(
    spec: ImageSpec,
    *,
    image_format: str,
    base_id: str,
    pipeline: str,
    env: Mapping[str, str],
    prepare_files: Sequence[str],
    ca_digest: str,
    fingerprints: Mapping[str, tuple[str, str]],
) -> dict[str, str]:
    """A digest of each input, by name; `fingerprints` is each source file's (kind, digest)."""
    prepare = spec.prepare
    return {
        "format": image_format,
        "base": base_id,
        "name": pipeline,
        "workdir": spec.workdir,
        "env": _digest(_pairs(env)),
        "prepare": _digest(
            [
                *_pairs(spec.caches),
                "run",
                *(prepare.run if prepare else ()),
                "env",
                *_pairs(prepare.env if prepare else {}),
                "files",
                *_files(prepare_files, fingerprints),
            ]
        ),
        "setup": _digest(spec.setup),
        "ca": ca_digest[:SHORT],
        "files": _digest(_files(sorted(fingerprints), fingerprints)),
    }


def decode(label: str | None) -> dict[str, str]:
    """The digests read back from an image's label; empty when it has none or another form."""
    if not label:
        return {}
    try:
        value = json.loads(label)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(name): str(digest) for name, digest in value.items()}


def differing(planned: Mapping[str, str], found: Mapping[str, str]) -> list[str]:
    """The inputs whose digests differ, in words; every input when `found` has none."""
    if not found:
        return ["its inputs are not recorded (an image made by another parapipe version?)"]
    names = [name for name in DESCRIPTIONS if name in planned or name in found]
    names += sorted((set(planned) | set(found)) - set(DESCRIPTIONS))
    return [
        _difference(name, found.get(name, "-"), planned.get(name, "-"))
        for name in names
        if planned.get(name) != found.get(name)
    ]


def _difference(name: str, archived: str, here: str) -> str:
    what = DESCRIPTIONS.get(name, name)
    if name in ("base", "format", "name", "workdir"):
        return f"{what} ({archived} in the archive, {here} here)"
    return what


def _files(paths: Iterable[str], fingerprints: Mapping[str, tuple[str, str]]) -> list[str]:
    return [part for path in paths for part in (path, *fingerprints.get(path, ("", "")))]


def _pairs(mapping: Mapping[str, str]) -> list[str]:
    return [part for pair in sorted(mapping.items()) for part in pair]


def length_prefixed(parts: Iterable[str]) -> bytes:
    """`parts` as one byte string, each prefixed with its length so no two sequences collide.
    Built whole and hashed in one call: a large tree has tens of thousands of parts."""
    encoded = [part.encode("utf-8", "surrogateescape") for part in parts]
    return b"".join([piece for data in encoded for piece in (len(data).to_bytes(8, "big"), data)])


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256(length_prefixed(parts)).hexdigest()[:SHORT]
