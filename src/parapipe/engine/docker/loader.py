"""What reaches a container on its stdin rather than in its config: the scripts that hand a step
its secrets (and, in a pooled container, its env) and start it. Pure functions.

A container's config (its `-e` values, its `--env-file` lines) is readable by anyone who may run
`docker inspect`, and the daemon writes it to disk (`config.v2.json`). So a step's secrets never
go there: a small `sh` loader, the container's first process, reads a script from stdin up to a
line holding a nonce chosen for that container, and `eval`s it. The script exports the variables
and `exec`s the step's command, so the step's shell is still PID 1 and nothing of the loader is
left.

- `LOADER` is a pooled container's: it says it is ready first, and runs nothing when its stdin
  ends without the nonce (the step starts a container of its own instead).
- `SECRETS_LOADER` is a step's own container's: the step's command comes as its arguments, and
  a container whose script never arrived fails, with its own message, never running the step
  without its secrets.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from parapipe.engine.api import LineSink, StepRun, step_command
from parapipe.errors import EngineError

READY_LINE: Final = b"parapipe-pool: ready"
HOLDER_READY_LINE: Final = b"parapipe-network: ready"
# A network holder's only process: it reads until its stdin ends (parapipe closes it, or goes).
HOLDER_SCRIPT: Final = "printf 'parapipe-network: ready\\n'; read -r line"

# $1 is the nonce. The loader's own variables are not exported, so the step never sees them.
LOADER: Final = """printf 'parapipe-pool: ready\\n'
script=
while IFS= read -r line; do
  if [ "$line" = "$1" ]; then eval "$script"; exit; fi
  script="$script$line
"
done
"""

# $1 is the nonce, the rest the step's command (`step_command`).
SECRETS_LOADER: Final = """script=
while IFS= read -r line; do
  if [ "$line" = "$1" ]; then shift; eval "$script"; exec "$@"; fi
  script="$script$line
"
done
echo "parapipe: error: the step's secrets did not reach its container" >&2
exit 125
"""
# A service's: the same, its command (its `run` under `sh -ec`, or its image's ENTRYPOINT and
# CMD) as its arguments. It reads its whole script before it runs that command, so the service
# never sees the end of its stdin as a reason to stop.
SERVICE_SECRETS_LOADER: Final = SECRETS_LOADER.replace("the step's", "the service's")

# An interactive shell's stdin is the user's terminal, so its secrets come another way: the
# container waits for `SHELL_SECRETS`, on a tmpfs of its own (memory: never in a layer, a commit
# or the daemon's files), which `docker exec -i` writes from its stdin once it runs; it sources
# and removes the file, then becomes the shell. Through the engine's API only, so it works on a
# remote engine too.
SHELL_SECRETS_DIR: Final = "/run/parapipe-secrets"
SHELL_SECRETS: Final = f"{SHELL_SECRETS_DIR}/env"
SHELL_SECRETS_WAIT: Final = f"""waited=0
while [ ! -e {SHELL_SECRETS} ]; do
  waited=$((waited + 1))
  if [ "$waited" -gt 600 ]; then
    echo "parapipe: error: the shell's secrets did not reach its container" >&2; exit 125
  fi
  sleep 0.05
done
. {SHELL_SECRETS}; rm -f {SHELL_SECRETS} 2>/dev/null || : > {SHELL_SECRETS}
"""
# Run by `docker exec -i`: the file appears whole, or not at all.
SHELL_SECRETS_WRITE: Final = (
    f"umask 077; cat > {SHELL_SECRETS}.part && mv {SHELL_SECRETS}.part {SHELL_SECRETS}"
)

_SHELL_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Read-only in bash, which is `sh` in some images: `export UID=...` would stop the loader.
_UNEXPORTABLE: Final = frozenset({"BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID"})


def exportable(name: str) -> bool:
    """Whether a loader's shell can `export` a variable of this name."""
    return _SHELL_NAME.fullmatch(name) is not None and name not in _UNEXPORTABLE


def step_script(run: StepRun, nonce: str) -> bytes:
    """What a pooled container's loader runs: export the step's variables, then become the
    step's own command (`marked_step_command`). The nonce line, last, is what starts it."""
    exec_line = "exec " + shlex.join(marked_step_command(run.commands, nonce))
    return _script({**run.env, **run.secrets}, nonce, exec_line)


def secrets_argv(run: StepRun, nonce: str) -> list[str]:
    """The command of a step's own container when it has secrets: `SECRETS_LOADER`, which runs
    the step's command once `secrets_script` arrived."""
    return ["sh", "-c", SECRETS_LOADER, "parapipe", nonce, *step_command(run.commands)]


def secrets_script(run: StepRun, nonce: str) -> bytes:
    """What `SECRETS_LOADER` reads: the step's secrets, exported; its env is in the container's
    config already. A secret whose name no shell can export is an `EngineError`, before anything
    starts: the step would run without it."""
    for name in run.secrets:
        if not exportable(name):
            raise EngineError(
                f"secret '{name}' of step '{run.step}' cannot be handed to the container: {name}"
                " is read-only in some shells; give the secret another name"
            )
    return _script(run.secrets, nonce)


def service_secrets_argv(nonce: str, command: Sequence[str]) -> list[str]:
    """The arguments, after `--entrypoint sh`, of a service's container that has secrets:
    `SERVICE_SECRETS_LOADER`, which `exec`s `command` once `service_secrets_script` arrived."""
    return ["-c", SERVICE_SECRETS_LOADER, "parapipe", nonce, *command]


def service_secrets_script(service: str, secrets: Mapping[str, str], nonce: str) -> bytes:
    """What `SERVICE_SECRETS_LOADER` reads: the service's secrets, exported. A name no shell can
    export is an `EngineError`, before anything starts, as a step's is."""
    for name in secrets:
        if not exportable(name):
            raise EngineError(
                f"secret '{name}' of service '{service}' cannot be handed to its container:"
                f" {name} is read-only in some shells; give the secret another name"
            )
    return _script(secrets, nonce)


def shell_secrets_script(secrets: Mapping[str, str]) -> bytes:
    """What `SHELL_SECRETS_WAIT` sources: the secrets, exported."""
    return _script(secrets, "true")


def _script(variables: Mapping[str, str], nonce: str, *more: str) -> bytes:
    lines = [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    return ("\n".join([*lines, *more, nonce]) + "\n").encode("utf-8", errors="surrogateescape")


def marked_step_command(commands: tuple[str, ...], nonce: str) -> list[str]:
    """`step_command`, whose shell also says its exit code as it exits: `<nonce> <code>` in a
    line of its own, after all it wrote (`ExitMarker` takes the line out of the log).

    The attached CLI returns the same code about 0.1 s later, once the daemon has torn the
    container down; the marker lets the next step start meanwhile.
    """
    sh, flag, script, *arguments = step_command(commands)
    trap = f'trap \'printf "\\n%s %d\\n" {nonce} "$?"\' EXIT\n'
    return [sh, flag, trap + script, *arguments]


class ExitMarker:
    """A pooled step's output on its way to the log, less the marker line of
    `marked_step_command` and the line break put before it; `code` is the marker's."""

    def __init__(self, nonce: str, log: LineSink) -> None:
        self.code: int | None = None
        self.on_exit: Callable[[], None] = _ignore  # called once the marker is read
        self._log = log
        self._marker = re.compile(rf"{re.escape(nonce)} (\d+)")
        self._blank_held = False  # a blank line, until it is known not to precede the marker

    def log(self, line: str) -> None:
        found = self._marker.fullmatch(line) if self.code is None else None
        if found is not None:
            self.code = int(found[1])
            self._blank_held = False
            self.on_exit()
            return
        self.flush()
        if line == "" and self.code is None:
            self._blank_held = True
        else:
            self._log(line)

    def flush(self) -> None:
        """The output ended without a marker (the shell was killed): pass on what was held."""
        if self._blank_held:
            self._blank_held = False
            self._log("")


def _ignore() -> None:
    pass
