"""Which Docker client can build with BuildKit, found by asking, once per process.

`RUN --mount=type=cache` needs BuildKit. Whether the client answers with it is not knowable
from its version: a 28.x client without buildx refuses `DOCKER_BUILDKIT=1` ("the buildx
component is missing"), while Debian's 20.10 client has BuildKit built in. So the probe builds
a one-line Dockerfile `FROM` the base (already local: nothing is pulled and nothing new is
made) with the client on PATH, then with Debian's `/usr/bin/docker`, and keeps the verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread

from parapipe.engine import process
from parapipe.errors import EngineError, EngineUnavailable

PROBE_TIMEOUT: Final = 30.0  # a BuildKit build of one FROM line, on a busy daemon
DISTRIBUTION_CLIENT: Final = "/usr/bin/docker"
HASH_LENGTH: Final = 20

# binary on PATH -> the client that builds with BuildKit, or None when none does.
_verdicts: dict[str, str | None] = {}


def candidates(binary: str) -> list[str]:
    """The clients to try, in order: the one on PATH, then the distribution's, once each."""
    found = shutil.which(binary)
    tried: list[str] = [found or binary]
    if os.access(DISTRIBUTION_CLIENT, os.X_OK) and (
        found is None or not os.path.samefile(found, DISTRIBUTION_CLIENT)
    ):
        tried.append(DISTRIBUTION_CLIENT)
    return tried


def probe_argv(binary: str, context: Path) -> list[str]:
    return [binary, "build", "--progress=plain", "-q", str(context)]


async def buildkit_client(program: process.Program, base_id: str) -> str | None:
    """The client that builds with BuildKit here, or None; asked once per process."""
    if program.binary in _verdicts:
        return _verdicts[program.binary]
    verdict: str | None = None
    with tempfile.TemporaryDirectory(prefix="parapipe-buildkit-probe-") as scratch:
        dockerfile = Path(scratch, "Dockerfile")
        async with base_reference(program, base_id) as reference:
            await anyio.to_thread.run_sync(dockerfile.write_text, f"FROM {reference}\n")
            verdict = await _first_answering(program, Path(scratch), base_id)
    _verdicts[program.binary] = verdict
    return verdict


@asynccontextmanager
async def base_reference(program: process.Program, base_id: str) -> AsyncIterator[str]:
    """A name for `base_id` that BuildKit can start `FROM` (an image id is not one): a tag the
    image has, else `parapipe-base:<hash>`, made for it and kept.

    Nothing is untagged afterwards: a tag shared by every build from the same base would vanish
    under another process's build from it, and removing the only tag of an untagged base (an
    `image.build` one) removes the image, and with it the legacy builder's cache of it."""
    answer = await process.query(program, tags_argv(program.binary, base_id), 60.0)
    if answer.code != 0:
        raise EngineError(f"{program.name}: cannot inspect the base image: {answer.problem}")
    tags = existing_tags(answer.out)
    if tags:
        yield tags[0]
        return
    reference = f"parapipe-base:{base_id.rpartition(':')[2][:HASH_LENGTH]}"
    tagged = await process.query(program, [program.binary, "tag", base_id, reference], 60.0)
    if tagged.code != 0:
        raise EngineError(f"{program.name}: cannot tag the base image: {tagged.problem}")
    yield reference


def tags_argv(binary: str, image_id: str) -> list[str]:
    return [binary, "image", "inspect", "--format", "{{json .RepoTags}}", image_id]


def existing_tags(answer: str) -> list[str]:
    """`tags_argv`'s answer as a list of tags (none for `null`, `[]` or `<none>` ones)."""
    try:
        tags = json.loads(answer.strip() or "null") or []
    except ValueError:
        return []
    return [tag for tag in tags if isinstance(tag, str) and tag and "<none>" not in tag]


async def _first_answering(program: process.Program, context: Path, base_id: str) -> str | None:
    for binary in candidates(program.binary):
        client = process.Program(
            name=program.name, binary=binary, install_hint=program.install_hint
        )
        try:
            with anyio.fail_after(PROBE_TIMEOUT):
                answer = await process.capture(
                    client, probe_argv(binary, context), env={"DOCKER_BUILDKIT": "1"}
                )
        except (TimeoutError, EngineUnavailable):
            continue
        if answer.code == 0:
            # The probe's build is an image of its own (BuildKit writes a new config): it goes,
            # so asking leaves nothing behind. The base keeps its own tags.
            built = answer.out.strip()
            if built and built != base_id:
                await process.query(client, [binary, "image", "rm", built], 60.0)
            return binary
    return None
