"""Moving a step's files across the container boundary as tar streams: its needs' outputs in,
its own outputs out. Shared by the engines that copy with `cp` (Docker, Podman)."""

from __future__ import annotations

import io
import posixpath
import tarfile
from pathlib import Path
from typing import IO

from parapipe.errors import OutputError


def pack_folders(folders: tuple[Path, ...], into: IO[bytes]) -> None:
    """One tar of the folders' contents, each laid out like the workdir; later folders win."""
    with tarfile.open(fileobj=into, mode="w") as tar:
        for folder in folders:
            for child in sorted(folder.iterdir()):
                tar.add(child, arcname=child.name, filter=_owned_by_root)
    into.seek(0)


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # As `COPY` does: files handed to a step belong to root, whoever ran parapipe.
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def unpack_output(data: bytes, output: str, destination: Path, step: str) -> None:
    """Extract the tar `cp CONTAINER:WORKDIR/OUTPUT -` wrote into `destination`, which is laid
    out like the workdir. A link that points outside it is refused."""
    parent = posixpath.dirname(output)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            members = tar.getmembers()
            for member in members:
                # `cp` names members after the output's last part; put them at its full path.
                member.name = posixpath.join(parent, member.name) if parent else member.name
                if member.islnk():
                    member.linkname = (
                        posixpath.join(parent, member.linkname) if parent else member.linkname
                    )
            tar.extractall(destination, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise OutputError(
            f"output '{output}' of step '{step}' holds a link that points outside the workdir"
            f" ({exc}); outputs must stay inside it"
        ) from exc
    except tarfile.TarError as exc:
        raise OutputError(f"output '{output}' of step '{step}' could not be read: {exc}") from exc
