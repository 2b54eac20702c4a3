"""What the Docker and Podman clients' error messages mean: every pattern parapipe matches in
their stderr, in one place, in both clients' wordings."""

from __future__ import annotations

import re
from typing import Final

# `docker run` exits with these when it, not the container, failed: 125 the daemon refused,
# 126 / 127 the entrypoint could not be run. A step's own command can exit with them too, so
# they only count as the engine's failure when the CLI also wrote an error of its own.
RUN_FAILURE_CODES: Final = frozenset({125, 126, 127})

# docker: "No such image: x"; podman: "x: image not known".
_NO_SUCH_IMAGE: Final = re.compile(r"no such image|image not known", re.IGNORECASE)
# docker: "Could not find the file /w/x in container c"; podman: "... no such file or directory".
_NO_SUCH_PATH: Final = re.compile(r"could not find|no such file|not found", re.IGNORECASE)
_PERMISSION_DENIED: Final = re.compile(r"permission denied", re.IGNORECASE)
# "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon
# running?"
_NO_DAEMON: Final = re.compile(r"cannot connect to the docker daemon at (\S+?)\.?(?:\s|$)", re.I)


# Buildah, when an image it was weighing as a layer-cache candidate is removed under it by a
# concurrent `rmi` or prune: "checking if cached image exists from a previous build: getting top
# layer info: layer not known". Nothing was built wrong; the same build succeeds again.
_STORAGE_RACE: Final = re.compile(r"cached image exists from a previous build.*layer not known")


def means_storage_race(problem: str) -> bool:
    return _STORAGE_RACE.search(problem) is not None


def means_no_such_image(problem: str) -> bool:
    return _NO_SUCH_IMAGE.search(problem) is not None


def means_no_such_path(problem: str) -> bool:
    """`cp CONTAINER:PATH -` failed because PATH is not there."""
    return _NO_SUCH_PATH.search(problem) is not None


def means_permission_denied(problem: str) -> bool:
    """The client may not use the daemon's socket."""
    return _PERMISSION_DENIED.search(problem) is not None


def unanswered_daemon(problem: str) -> str | None:
    """The address of the daemon the client could not reach, when that is what `problem` says."""
    found = _NO_DAEMON.search(problem)
    return found[1] if found else None


def is_run_failure(code: int, cli_stderr: list[str]) -> bool:
    """Whether `docker run`/`start --attach` exiting with `code` is the engine's failure, not
    the step's: one of its own codes, with an error of its own on stderr (the step's stderr
    reaches stdout, through the step script)."""
    return code in RUN_FAILURE_CODES and any(line.strip() for line in cli_stderr)
