"""The command lines and the Dockerfile the Docker and Podman engines use, as pure functions.

Nothing here runs anything, so every argv can be tested on its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from parapipe.engine.api import CacheVolume, StepRun, step_command
from parapipe.errors import EngineError
from parapipe.model import (
    CA_BUNDLE_PATH,
    LABEL_CACHE,
    LABEL_PIPELINE,
    LABEL_RUN,
    LABEL_STEP,
    DockerfileBuild,
    ImagePlan,
)

# Where `write_build_context` puts things inside the build context.
CONTEXT_SOURCE: Final = "source"
CONTEXT_CA_BUNDLE: Final = "ca-certificates.crt"
CONTEXT_DOCKERFILE: Final = "Dockerfile"

# Each setup command runs in its own `sh -e`, announced like a step's commands, and on failure
# prints a marker naming it: the builders (legacy, BuildKit, Buildah) all word their own error
# differently, the marker reads the same everywhere.
_SETUP_SCRIPT: Final = (
    "printf '$ %s\\n' \"$2\"; "
    'sh -ec "$2" || { status=$?; '
    'printf \'parapipe: setup command %s failed with exit %d\\n\' "$1" "$status"; '
    'exit "$status"; }'
)
_SETUP_FAILURE: Final = re.compile(r"parapipe: setup command (\d+) failed with exit (\d+)\s*$")

_ERROR_WORD: Final = re.compile(r"\berror\b", re.IGNORECASE)
_ERROR_LOOKBACK: Final = 5

# Variables the engine's CLI reads itself. A step's value for one of these would change how
# the CLI behaves (which daemon, which config, which proxy) if it came through the CLI's
# environment, so these go on the command line as NAME=VALUE instead.
_CLI_ENV_PREFIXES: Final = (
    "DOCKER_",
    "BUILDKIT_",
    "BUILDX_",
    "CONTAINERS_",
    "CONTAINER_",
    "PODMAN_",
    "BUILDAH_",
    "STORAGE_",
    "XDG_",
    "LD_",
    "SSL_",
    "LC_",
)
_CLI_ENV_NAMES: Final = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TMPDIR",
        "TMP",
        "TEMP",
        "LANG",
        "TZ",
        "NOTIFY_SOCKET",
        "REGISTRY_AUTH_FILE",
        "GODEBUG",
        "GOGC",
        "GOMAXPROCS",
        "GOMEMLIMIT",
        "GOTRACEBACK",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "FTP_PROXY",
    }
)


def check_argv(binary: str) -> list[str]:
    """Asks the daemon (not only the client) for its version."""
    return [binary, "version", "--format", "{{.Server.Version}}"]


def podman_check_argv(binary: str) -> list[str]:
    # Local podman has no server; `info` touches its storage and runtime, which is what a run
    # needs to work.
    return [binary, "info", "--format", "{{.Version.Version}}"]


def buildx_probe_argv(binary: str) -> list[str]:
    return [binary, "buildx", "version"]


def image_id_argv(binary: str, ref: str) -> list[str]:
    return [binary, "image", "inspect", "--format", "{{.Id}}", ref]


def pull_argv(binary: str, ref: str) -> list[str]:
    return [binary, "pull", ref]


def base_build_argv(
    binary: str, build: DockerfileBuild, iidfile: Path, flags: Sequence[str] = ()
) -> list[str]:
    """`image.build`: the base image from the user's Dockerfile."""
    argv = [binary, "build", *flags, "-f", str(build.dockerfile)]
    for name, value in build.args.items():
        argv += ["--build-arg", f"{name}={value}"]
    return [*argv, "--iidfile", str(iidfile), str(build.context)]


def build_argv(
    binary: str, context: Path, tag: str, iidfile: Path, flags: Sequence[str] = ()
) -> list[str]:
    """The pipeline image, from a context made by `write_build_context`."""
    dockerfile = context / CONTEXT_DOCKERFILE
    return [
        binary,
        "build",
        *flags,
        "-f",
        str(dockerfile),
        "-t",
        tag,
        "--iidfile",
        str(iidfile),
        str(context),
    ]


def dockerfile_text(plan: ImagePlan) -> str:
    """The Dockerfile of the pipeline image, for a context made by `write_build_context`.

    Values are quoted for the Dockerfile parser (which expands `$` in ENV, LABEL and WORKDIR);
    RUN and COPY use the JSON form, which has no shell quoting at all.
    """
    lines = [f"# parapipe {plan.tag}", f"FROM {plan.base_id}"]
    if plan.labels:
        lines.append("LABEL " + _assignments(plan.labels))
    if plan.ca_bundle is not None:
        lines.append("COPY " + json.dumps([CONTEXT_CA_BUNDLE, CA_BUNDLE_PATH]))
    if plan.env:
        lines.append("ENV " + _assignments(plan.env, quote_names=False))
    lines.append("WORKDIR " + dockerfile_quote(plan.workdir))
    # Relative to WORKDIR, so the path is not written (and expanded) a second time.
    lines.append("COPY " + json.dumps([f"{CONTEXT_SOURCE}/", "./"]))
    for number, command in enumerate(plan.setup, start=1):
        lines.append("RUN " + json.dumps(setup_command(number, command)))
    return "\n".join(lines) + "\n"


def setup_command(number: int, command: str) -> list[str]:
    return ["sh", "-c", _SETUP_SCRIPT, "parapipe-setup", str(number), command]


def setup_failure(line: str) -> tuple[int, int] | None:
    """`(setup command number, exit code)` when `line` is the marker of a failed setup command."""
    found = _SETUP_FAILURE.search(line)
    return (int(found[1]), int(found[2])) if found else None


def dockerfile_quote(value: str) -> str:
    """`value` as a double-quoted Dockerfile word: `\\`, `"` and `$` escaped, nothing expanded.

    Line breaks cannot be quoted in a Dockerfile; `plan_image` rejects them earlier.
    """
    if "\n" in value or "\r" in value:
        raise ValueError("a Dockerfile word cannot contain a line break")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _assignments(pairs: Mapping[str, str], *, quote_names: bool = True) -> str:
    return " ".join(
        f"{dockerfile_quote(name) if quote_names else name}={dockerfile_quote(value)}"
        for name, value in pairs.items()
    )


def container_name(run_id: str, step: str, attempt: int = 1) -> str:
    """`parapipe-<run_id>-<step>` (`.<attempt>` from the second attempt on, a dot because step
    names cannot hold one), made a valid container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).

    When characters had to be replaced, a short hash of the original keeps names distinct.
    """
    wanted = f"parapipe-{run_id}-{step}" + (f".{attempt}" if attempt > 1 else "")
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", wanted)
    if name != wanted:
        name += "-" + hashlib.sha256(wanted.encode()).hexdigest()[:8]
    return name


def passed_through_cli_env(name: str) -> bool:
    """Whether a step variable reaches the container through the CLI's environment (`-e NAME`),
    which keeps its value out of `ps`, rather than as `-e NAME=VALUE` on the command line."""
    upper = name.upper()
    return (
        bool(name)
        and "=" not in name
        and upper not in _CLI_ENV_NAMES
        and not upper.startswith(_CLI_ENV_PREFIXES)
    )


def step_cli_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to the CLI's own environment for `run_argv`'s `-e NAME` flags."""
    return {name: value for name, value in env.items() if passed_through_cli_env(name)}


def run_cli_env(run: StepRun) -> dict[str, str]:
    """The variables to add to the CLI's own environment for `run_argv`'s `-e NAME` flags: the
    step's env and its secrets, except those whose names the CLI reads itself."""
    secrets = {name: value for name, value in run.secrets.items() if passed_through_cli_env(name)}
    return {**step_cli_env(run.env), **secrets}


def secret_env_file_text(run: StepRun) -> str | None:
    """The `--env-file` holding the secrets whose names the CLI reads itself (`DOCKER_PASSWORD`,
    `HTTPS_PROXY`): through the CLI's environment they would change how it works, and on the
    command line they would show in `ps`. None when there are none.

    Both CLIs take an env file's values literally, one line each, so a value with a line break
    cannot go there: that is an `EngineError` naming the secret.
    """
    lines: list[str] = []
    for name, value in run.secrets.items():
        if passed_through_cli_env(name):
            continue
        if "\n" in value or "\r" in value:
            raise EngineError(
                f"secret '{name}' of step '{run.step}' has several lines, and {name} is a"
                " variable the container engine's CLI reads itself, so it could only reach the"
                " container on a command line: give the secret another name"
            )
        lines.append(f"{name}={value}\n")
    return "".join(lines) if lines else None


def run_argv(
    binary: str, run: StepRun, name: str, *, create: bool = False, env_file: Path | None = None
) -> list[str]:
    """`run` as `docker run`, or as `docker create` for a step whose files are copied in and
    out around its start; values of `run_cli_env(run)` must be in the CLI's environment, and
    `env_file` must hold `secret_env_file_text(run)` when that is not None."""
    verb = ["create"] if create else ["run", "--rm"]
    argv = [binary, *verb, "--pull=never", "--name", name]
    labels = {**run.labels, LABEL_RUN: run.run_id, LABEL_STEP: run.step}
    for label, value in labels.items():
        argv += ["--label", f"{label}={value}"]
    for variable, value in run.env.items():
        argv += ["-e", variable if passed_through_cli_env(variable) else f"{variable}={value}"]
    # A secret's value is never an argument: it comes from the CLI's environment or a file.
    for variable in run.secrets:
        if passed_through_cli_env(variable):
            argv += ["-e", variable]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    elif any(not passed_through_cli_env(variable) for variable in run.secrets):
        raise ValueError("run_argv needs the env_file of secret_env_file_text(run)")
    for cache in run.caches:
        argv += ["-v", f"{cache.name}:{cache.path}"]
    return [*argv, "-w", run.workdir, run.image_id, *step_command(run.commands)]


def volume_inspect_argv(binary: str, volume: str) -> list[str]:
    return [binary, "volume", "inspect", "--format", "{{.Name}}", volume]


def volume_create_argv(binary: str, cache: CacheVolume) -> list[str]:
    """The cache's volume, labelled so that `docker volume ls --filter label=io.parapipe.cache`
    finds every cache parapipe made."""
    argv = [binary, "volume", "create"]
    for label, value in cache.labels.items():
        argv += ["--label", f"{label}={value}"]
    return [*argv, cache.name]


def start_argv(binary: str, name: str) -> list[str]:
    return [binary, "start", "--attach", name]


def copy_in_argv(binary: str, name: str, workdir: str) -> list[str]:
    """Extract the tar on stdin into the container's workdir."""
    return [binary, "cp", "-", f"{name}:{workdir}"]


def copy_out_argv(binary: str, name: str, path: str) -> list[str]:
    """Write `path` of the container to stdout as a tar."""
    return [binary, "cp", f"{name}:{path}", "-"]


def remove_argv(binary: str, containers: Iterable[str]) -> list[str]:
    return [binary, "rm", "-f", *containers]


def list_cache_volumes_argv(binary: str, pipeline: str) -> list[str]:
    filters = [f"label={LABEL_CACHE}", f"label={LABEL_PIPELINE}={pipeline}"]
    return [binary, "volume", "ls", "-q", *(f for label in filters for f in ("--filter", label))]


def volume_remove_argv(binary: str, volumes: Iterable[str]) -> list[str]:
    return [binary, "volume", "rm", *volumes]


def list_run_containers_argv(binary: str, run_id: str) -> list[str]:
    return [binary, "ps", "-aq", "--no-trunc", "--filter", f"label={LABEL_RUN}={run_id}"]


def error_line(lines: Iterable[str]) -> str:
    """The line of a CLI's output that says what went wrong.

    The last line saying "error" among the last few, since a CLI often follows its error with
    a hint or a link; else simply the last line. Blank lines and pointers to `--help` do not
    count.
    """
    meaningful = [
        line.strip()
        for line in lines
        if line.strip() and not re.match(r"\s*(Run|See) '\S+ .*--help'", line)
    ]
    if not meaningful:
        return "no error message"
    recent = meaningful[-_ERROR_LOOKBACK:]
    return next((line for line in reversed(recent) if _ERROR_WORD.search(line)), meaningful[-1])


def normalized_image_id(image_id: str) -> str:
    """`image_id` as `sha256:<hex>`. Podman's `image inspect` prints the bare hex where Docker
    prints the prefix (and both write it to `--iidfile`); one form keeps the image plan's hash,
    and so its tag, the same for the same image on either engine."""
    image_id = image_id.strip()
    if re.fullmatch(r"[0-9a-f]{64}", image_id):
        return f"sha256:{image_id}"
    return image_id
