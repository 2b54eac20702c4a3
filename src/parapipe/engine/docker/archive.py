"""Image archives through the Docker and Podman clients: `save` piped through a compressor into
a file, and a file piped through its decompressor into `load`.

The bytes go from one child to the other through an OS pipe, never through parapipe. The
archive is Docker's `save` format (Podman writes and reads it too), compressed with zstd when
it is installed, else gzip; `load` reads the compression from the file's first bytes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import anyio
from anyio.abc import Process

from parapipe.engine import process
from parapipe.engine.docker import errors
from parapipe.errors import EngineError, UsageError

QUERY_TIMEOUT: Final = 60.0

GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
TAR_MAGIC_OFFSET: Final = 257  # "ustar" in the first header of a tar archive


@dataclass(frozen=True, kw_only=True)
class Codec:
    """A compressor on PATH: how to compress to stdout, and to decompress from stdin."""

    name: str
    compress: tuple[str, ...]
    decompress: tuple[str, ...]

    @property
    def program(self) -> process.Program:
        return process.Program(
            name=self.name,
            binary=self.name,
            install_hint=f"install {self.name} (apt-get install {self.name})",
        )


# zstd at its default level on every core: about as small as gzip -6, several times faster.
ZSTD: Final = Codec(
    name="zstd", compress=("zstd", "-q", "-c", "-T0"), decompress=("zstd", "-q", "-dc")
)
GZIP: Final = Codec(name="gzip", compress=("gzip", "-c"), decompress=("gzip", "-dc"))
NONE: Final = Codec(name="cat", compress=("cat",), decompress=("cat",))


def save_codec() -> Codec:
    """zstd when it is installed, else gzip."""
    return ZSTD if shutil.which("zstd") else GZIP


def codec_of(head: bytes) -> Codec | None:
    """The compression of an archive from its first bytes; None when it is no archive."""
    if head.startswith(ZSTD_MAGIC):
        return ZSTD
    if head.startswith(GZIP_MAGIC):
        return GZIP
    if head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == b"ustar":
        return NONE
    return None


def save_argv(binary: str, references: Sequence[str], flags: Sequence[str] = ()) -> list[str]:
    return [binary, "save", *flags, *references]


def load_argv(binary: str) -> list[str]:
    return [binary, "load"]


def labels_argv(binary: str, reference: str) -> list[str]:
    return [binary, "image", "inspect", "--format", "{{json .Config.Labels}}", reference]


def tag_argv(binary: str, image_id: str, reference: str) -> list[str]:
    return [binary, "tag", image_id, reference]


def untag_argv(binary: str, references: Sequence[str]) -> list[str]:
    # Without -f: a tag another image still builds on stays, rather than leaving it broken.
    return [binary, "rmi", *references]


def loaded_references(output: str) -> list[str]:
    """What `load` says it loaded: `Loaded image: REF` (Docker, Podman), `Loaded image(s): A,B`
    (older Podman), `Loaded image ID: sha256:...` (Docker, an image saved without a tag)."""
    loaded: list[str] = []
    for line in output.splitlines():
        match = re.match(r"Loaded image(?:\(s\))?(?: ID)?:\s*(.+)$", line.strip())
        if match:
            loaded.extend(ref.strip() for ref in match.group(1).split(",") if ref.strip())
    return loaded


async def save(
    program: process.Program,
    references: Sequence[str],
    destination: IO[bytes],
    flags: Sequence[str] = (),
) -> None:
    """Write the images `references` name, their shared layers once, to `destination`;
    `flags` for `save` (Podman needs `-m` to take a second name as an image, not a tag)."""
    codec = save_codec()
    with _Pipe() as pipe:
        async with (
            process.spawn(
                program, save_argv(program.binary, references, flags), stdout=pipe.write_end
            ) as saver,
            process.spawn(
                codec.program, codec.compress, stdin=pipe.read_end, stdout=destination
            ) as packer,
        ):
            pipe.close()
            saved, packed = await _finish(saver), await _finish(packer)
    if saved.code != 0:
        if errors.means_no_such_image(saved.problem):
            raise UsageError(f"{program.name}: cannot save {' '.join(references)}: {saved.problem}")
        raise EngineError(f"{program.name}: cannot save {' '.join(references)}: {saved.problem}")
    if packed.code != 0:
        raise EngineError(f"{codec.name} failed while writing the archive: {packed.problem}")


async def load(program: process.Program, archive: Path) -> list[str]:
    """Load `archive` into the engine; the references it loaded. An archive that is not one, or
    that is damaged (the engine checks every layer against its digest), is a `UsageError`."""
    try:
        source = archive.open("rb", buffering=0)  # unbuffered: the child reads from offset 0
    except OSError as exc:
        raise UsageError(f"{archive}: cannot read the archive: {exc.strerror or exc}") from None
    with source:
        codec = codec_of(source.read(TAR_MAGIC_OFFSET + 5))
        if codec is None:
            raise UsageError(f"{archive}: not an image archive (neither zstd, gzip nor tar)")
        source.seek(0)
        with _Pipe() as pipe:
            async with (
                process.spawn(
                    codec.program, codec.decompress, stdin=source, stdout=pipe.write_end
                ) as unpacker,
                process.spawn(program, load_argv(program.binary), stdin=pipe.read_end) as loader,
            ):
                pipe.close()
                unpacked, loaded = await _finish(unpacker), await _finish(loader)
    if unpacked.code != 0:
        raise UsageError(f"{archive}: a damaged archive: {codec.name}: {unpacked.problem}")
    if loaded.code != 0:
        raise UsageError(f"{archive}: {program.name} cannot load it: {loaded.problem}")
    references = loaded_references(loaded.out)
    if not references:
        raise UsageError(f"{archive}: {program.name} loaded no image from it")
    return references


async def labels(program: process.Program, reference: str) -> dict[str, str]:
    answer = await process.query(program, labels_argv(program.binary, reference), QUERY_TIMEOUT)
    if answer.code != 0:
        raise EngineError(
            f"{program.name}: cannot read the labels of {reference}: {answer.problem}"
        )
    try:
        value = json.loads(answer.out or "null")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


async def tag(program: process.Program, image_id: str, reference: str) -> None:
    answer = await process.query(
        program, tag_argv(program.binary, image_id, reference), QUERY_TIMEOUT
    )
    if answer.code != 0:
        raise EngineError(f"{program.name}: cannot tag {image_id} as {reference}: {answer.problem}")


async def untag(program: process.Program, references: Sequence[str]) -> None:
    """Remove each tag in turn, in the order given (an image before the base it builds on)."""
    for reference in references:
        argv = untag_argv(program.binary, [reference])
        answer = await process.query(program, argv, QUERY_TIMEOUT)
        if answer.code != 0 and not errors.means_no_such_image(answer.problem):
            raise EngineError(f"{program.name}: cannot remove {reference}: {answer.problem}")


async def _finish(child: Process) -> process.Finished:
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    async with anyio.create_task_group() as readers:
        readers.start_soon(process.drain, child.stdout, stdout)
        readers.start_soon(process.drain, child.stderr, stderr)
    code = await child.wait()
    return process.Finished(code=code, stdout=b"".join(stdout), stderr=b"".join(stderr))


class _Pipe:
    """An OS pipe between two children. The parent closes its ends once both children hold
    them, so that each child sees the end of the other's output; closed once, whatever happens."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            os.close(self.read_end)
            os.close(self.write_end)

    def __enter__(self) -> _Pipe:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
