"""The command lines the Docker and Podman engines use, as pure functions (their Dockerfiles
are in `dockerfile.py`).

Nothing here runs anything, so every argv can be tested on its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from parapipe.engine.api import CacheVolume, ShellRun, StepRun, step_command
from parapipe.engine.docker import loader
from parapipe.model import (
    LABEL_CACHE,
    LABEL_PIPELINE,
    LABEL_RUN,
    LABEL_STEP,
    DockerfileBuild,
    Prewarm,
)

CONTEXT_DOCKERFILE: Final = "Dockerfile"  # beside what `write_build_context` lays out
POOL_LABEL: Final = "io.parapipe.pool"  # a container started ahead of the step it will run
HOLDER_LABEL: Final = "io.parapipe.network-holder"  # a container that lends its network

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


def container_name(run_id: str, step: str, attempt: int = 1) -> str:
    """`parapipe-<run_id>-<step>` (`.<attempt>` from the second attempt on, a dot because step
    names cannot hold one), made a valid container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).

    When characters had to be replaced, a short hash of the original keeps names distinct.
    """
    return valid_name(f"parapipe-{run_id}-{step}" + (f".{attempt}" if attempt > 1 else ""))


def pool_container_name(run_id: str, number: int) -> str:
    """`parapipe-<run_id>.pool-<n>`: a step's is `parapipe-<run_id>-<step>`, so the two never
    meet, whatever the steps are called."""
    return valid_name(f"parapipe-{run_id}.pool-{number}")


def holder_name(run_id: str, number: int) -> str:
    """`parapipe-<run_id>.net-<n>`: never the name of a step's container or a pooled one."""
    return valid_name(f"parapipe-{run_id}.net-{number}")


def valid_name(wanted: str) -> str:
    """`wanted` made a valid container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`). When characters had
    to be replaced, a short hash of the original keeps names distinct."""
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


def container_argv(
    binary: str,
    verb: str,
    name: str,
    labels: Mapping[str, str],
    *,
    interactive: bool = False,
    remove: bool = False,
    network: str | None = None,
) -> list[str]:
    """`docker run`/`create` up to the image: every container parapipe starts (a step's own,
    a pooled one, a network holder) is named, labelled, and never pulls its image."""
    argv = [binary, verb, *(["-i"] if interactive else []), *(["--rm"] if remove else [])]
    argv += ["--pull=never", "--name", name, *network_flags(network)]
    for label, value in labels.items():
        argv += ["--label", f"{label}={value}"]
    return argv


def network_flags(holder: str | None) -> list[str]:
    """The `run` flags of a container in `holder`'s network; none for a network of its own."""
    return [] if holder is None else ["--network", f"container:{holder}"]


def run_argv(
    binary: str,
    run: StepRun,
    name: str,
    *,
    create: bool = False,
    nonce: str = "",
    network: str | None = None,
) -> list[str]:
    """`run` as `docker run`, or as `docker create` for a step whose files are copied in and
    out around its start; values of `step_cli_env(run.env)` must be in the CLI's environment.
    `network`: the network of the step's services, when it has any.

    A step with secrets reads them on stdin (`loader.secrets_argv`, with `nonce`): they are in
    neither its argv nor its container's config.
    """
    labels = {**run.labels, LABEL_RUN: run.run_id, LABEL_STEP: run.step}
    interactive = bool(run.secrets)
    if interactive and not nonce:
        raise ValueError("run_argv needs the nonce of the step's secrets script")
    verb = "create" if create else "run"
    argv = container_argv(binary, verb, name, labels, interactive=interactive, remove=not create)
    if network is not None:
        argv += ["--network", network]
    for variable, value in run.env.items():
        argv += ["-e", variable if passed_through_cli_env(variable) else f"{variable}={value}"]
    for cache in run.caches:
        argv += ["-v", f"{cache.name}:{cache.path}"]
    command = loader.secrets_argv(run, nonce) if interactive else step_command(run.commands)
    return [*argv, "-w", run.workdir, run.image_id, *command]


# The shell container's command, under `sh`: the `--shell` argv when given, else bash if the
# image has it, else sh.
_SHELL_SCRIPT: Final = """if [ "$#" -gt 0 ]; then exec "$@"; fi
if [ -x /bin/bash ]; then exec /bin/bash; fi
exec /bin/sh
"""


def shell_create_argv(
    binary: str, run: ShellRun, name: str, network: str | None = None
) -> list[str]:
    """`docker create -i -t` for an interactive shell: the step's env (as `run_argv` passes it),
    its caches and workdir; on `network`, that of its services, when it has any. `sh` is the
    entrypoint, so the kept image's command and any ENTRYPOINT are not run. Its secrets are
    handed over once it runs (`loader.SHELL_SECRETS`, on a tmpfs), so they are in neither its
    config nor a command line."""
    labels = {**run.labels, LABEL_RUN: run.run_id, LABEL_STEP: run.step}
    argv = container_argv(binary, "create", name, labels, interactive=True)
    argv.append("--tty")
    if network is not None:
        argv += ["--network", network]
    for variable, value in run.env.items():
        if variable not in run.secrets:
            argv += ["-e", variable if passed_through_cli_env(variable) else f"{variable}={value}"]
    if run.secrets:
        argv += ["--tmpfs", f"{loader.SHELL_SECRETS_DIR}:mode=0700"]
    for cache in run.caches:
        argv += ["-v", f"{cache.name}:{cache.path}"]
    argv += ["-w", run.workdir, "--entrypoint", "/bin/sh", run.image_id]
    script = loader.SHELL_SECRETS_WAIT + _SHELL_SCRIPT if run.secrets else _SHELL_SCRIPT
    return [*argv, "-c", script, "parapipe", *run.shell]


def shell_cli_env(run: ShellRun) -> dict[str, str]:
    """The CLI's environment for `shell_create_argv`: the values of its `-e NAME` flags."""
    return step_cli_env({k: v for k, v in run.env.items() if k not in run.secrets})


def start_terminal_argv(binary: str, name: str) -> list[str]:
    """Start a `create`d shell container attached to parapipe's terminal."""
    return [binary, "start", "--attach", "--interactive", name]


def commit_argv(binary: str, name: str, tag: str, changes: Sequence[str] = ()) -> list[str]:
    """A stopped container's filesystem as the image `tag`, with `changes` (Dockerfile lines) to
    its config. A step's has its env but not its secrets, which reached it on stdin."""
    return [binary, "commit", *(f for change in changes for f in ("--change", change)), name, tag]


def image_remove_argv(binary: str, images: Iterable[str]) -> list[str]:
    return [binary, "rmi", "-f", *images]


def pool_run_argv(
    binary: str,
    request: Prewarm,
    name: str,
    nonce: str,
    *,
    keep: bool = False,
    network: str | None = None,
) -> list[str]:
    """`docker run -i` for a pooled container: `run_argv`'s flags for a container of `request`,
    with `loader.LOADER` in place of the step's label, env and command. `--rm` unless `keep`, as a
    step with outputs is `create`d (without it) to copy them out once it stopped. In the network
    of the holder `network`, if any."""
    labels = {**request.labels, LABEL_RUN: request.run_id, POOL_LABEL: "1"}
    argv = container_argv(
        binary, "run", name, labels, interactive=True, remove=not keep, network=network
    )
    return [
        *argv,
        "-w",
        request.workdir,
        request.image_id,
        "sh",
        "-c",
        loader.LOADER,
        "parapipe",
        nonce,
    ]


def holder_argv(binary: str, request: Prewarm, name: str) -> list[str]:
    """A network holder: `loader.HOLDER_SCRIPT`, which keeps its network until its stdin ends."""
    labels = {**request.labels, LABEL_RUN: request.run_id, HOLDER_LABEL: "1"}
    argv = container_argv(binary, "run", name, labels, interactive=True, remove=True)
    return [*argv, request.image_id, "sh", "-c", loader.HOLDER_SCRIPT]


def entrypoint_argv(binary: str, image_id: str) -> list[str]:
    return [binary, "image", "inspect", "--format", "{{json .Config.Entrypoint}}", image_id]


def image_command_argv(binary: str, image_id: str) -> list[str]:
    """The image's ENTRYPOINT and CMD as JSON, a line each (`null` when it has none)."""
    template = "{{json .Config.Entrypoint}}\n{{json .Config.Cmd}}"
    return [binary, "image", "inspect", "--format", template, image_id]


def volume_inspect_argv(binary: str, volume: str) -> list[str]:
    return [binary, "volume", "inspect", "--format", "{{.Name}}", volume]


def volume_create_argv(binary: str, cache: CacheVolume) -> list[str]:
    """The cache's volume, labelled so that `docker volume ls --filter label=io.parapipe.cache`
    finds every cache parapipe made."""
    argv = [binary, "volume", "create"]
    for label, value in cache.labels.items():
        argv += ["--label", f"{label}={value}"]
    return [*argv, cache.name]


def start_argv(binary: str, name: str, *, interactive: bool = False) -> list[str]:
    """Start a `create`d container, attached; `interactive`: with its stdin, for its secrets."""
    return [binary, "start", "--attach", *(["--interactive"] if interactive else []), name]


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


def normalized_image_id(image_id: str) -> str:
    """`image_id` as `sha256:<hex>`. Podman's `image inspect` prints the bare hex where Docker
    prints the prefix (and both write it to `--iidfile`); one form keeps the image plan's hash,
    and so its tag, the same for the same image on either engine."""
    image_id = image_id.strip()
    if re.fullmatch(r"[0-9a-f]{64}", image_id):
        return f"sha256:{image_id}"
    return image_id
