"""Where each engine's client will find its engine, and whether that engine is local: the one
place that reads `DOCKER_HOST`, docker contexts, `CONTAINER_HOST`, podman connections and
Dagger's runner host. Pure functions of the environment and the clients' config files.

*Local* means a unix socket on this host, reached with no remote connection configured. Nothing
parapipe does depends on the engine sharing this host's files (no host path is ever mounted: the
source and the CA bundle go in the build context, the needs' outputs and the steps' outputs
through `cp` as tar streams, secrets on stdin), so a remote engine takes the same path as a local
one. Being local decides only how long the engine gets to answer the first probe and whether the
run's first line names the endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DOCKER_DEFAULT: Final = "unix:///var/run/docker.sock"
DAGGER_RUNNER_HOST_ENV: Final = "_EXPERIMENTAL_DAGGER_RUNNER_HOST"
_LOCAL_SCHEMES: Final = ("unix://", "npipe://")


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where an engine's client connects, and why there."""

    address: str  # a URL (tcp://, ssh://, unix://, ...) or, when unknown, what names it
    source: str  # why this one: "DOCKER_HOST", "docker context 'ci'", "the client's default"
    local: bool  # a unix socket on this host, no remote connection
    default: bool = False  # the client's built-in endpoint: not worth naming on the first line

    def label(self) -> str | None:
        """The endpoint for the run's first line (`docker at tcp://...`); None for the default."""
        return None if self.default else self.address


def is_local_address(address: str) -> bool:
    return address.startswith(_LOCAL_SCHEMES)


def docker_endpoint(env: Mapping[str, str], home: Path) -> Endpoint:
    """The daemon the docker CLI talks to, in the CLI's own order: `DOCKER_HOST`, then
    `DOCKER_CONTEXT`, then the context `docker context use` chose (`~/.docker/config.json`)."""
    if host := env.get("DOCKER_HOST"):
        return Endpoint(address=host, source="DOCKER_HOST", local=is_local_address(host))
    config_dir = Path(env.get("DOCKER_CONFIG") or home / ".docker")
    context = env.get("DOCKER_CONTEXT") or _current_docker_context(config_dir)
    if not context or context == "default":
        return Endpoint(
            address=DOCKER_DEFAULT, source="the client's default", local=True, default=True
        )
    source = f"docker context '{context}'"
    host = _docker_context_host(config_dir, context)
    if host is None:
        return Endpoint(address=source, source=source, local=False)
    return Endpoint(address=host, source=source, local=is_local_address(host))


def _current_docker_context(config_dir: Path) -> str | None:
    config = _read_json(config_dir / "config.json")
    context = config.get("currentContext")
    return context if isinstance(context, str) else None


def _docker_context_host(config_dir: Path, context: str) -> str | None:
    """The docker endpoint of a context, from its metadata (stored under the name's sha256)."""
    digest = hashlib.sha256(context.encode()).hexdigest()
    meta = _read_json(config_dir / "contexts" / "meta" / digest / "meta.json")
    endpoints = meta.get("Endpoints")
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    host = docker.get("Host") if isinstance(docker, dict) else None
    return host if isinstance(host, str) and host else None


def podman_endpoint(env: Mapping[str, str], home: Path) -> Endpoint:
    """The service the podman CLI talks to, in podman's own order: `CONTAINER_HOST`, then
    `CONTAINER_CONNECTION`, then the default connection when containers.conf says
    `remote = true`; else podman runs the containers itself (no service at all)."""
    if host := env.get("CONTAINER_HOST"):
        return Endpoint(address=host, source="CONTAINER_HOST", local=is_local_address(host))
    connections, default, remote = _podman_connections(env, home)
    name = env.get("CONTAINER_CONNECTION") or (default if remote else None)
    if not name:
        return Endpoint(
            address="the local podman", source="no connection", local=True, default=True
        )
    source = f"podman connection '{name}'"
    uri = connections.get(name)
    if uri is None:
        return Endpoint(address=source, source=source, local=False)
    return Endpoint(address=uri, source=source, local=is_local_address(uri))


def _podman_connections(env: Mapping[str, str], home: Path) -> tuple[dict[str, str], str, bool]:
    """Podman's connections by name with their URIs, the default one, and whether remote mode is
    on, from containers.conf (podman 4) and podman-connections.json (podman 4.8 and later)."""
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    files = [Path("/etc/containers/containers.conf"), config_home / "containers/containers.conf"]
    if conf := env.get("CONTAINERS_CONF"):
        files.append(Path(conf))
    connections: dict[str, str] = {}
    default, remote = "", False
    for path in files:
        engine = _read_toml(path).get("engine")
        if not isinstance(engine, dict):
            continue
        remote = bool(engine.get("remote", remote))
        default = str(engine.get("active_service", default))
        for name, destination in (engine.get("service_destinations") or {}).items():
            if isinstance(destination, dict) and isinstance(destination.get("uri"), str):
                connections[name] = destination["uri"]
    stored = _read_json(config_home / "containers/podman-connections.json").get("Connection")
    if isinstance(stored, dict):
        default = str(stored.get("Default") or default)
        for name, destination in (stored.get("Connections") or {}).items():
            if isinstance(destination, dict) and isinstance(destination.get("URI"), str):
                connections[name] = destination["URI"]
    return connections, default, remote


def dagger_endpoint(env: Mapping[str, str]) -> Endpoint:
    """The engine the Dagger CLI connects to: `_EXPERIMENTAL_DAGGER_RUNNER_HOST` when set
    (tcp://, unix://, docker-container://, kube-pod://, ...), else the engine it starts itself.
    Dagger never mounts host paths either way: host folders reach it through its session."""
    if host := env.get(DAGGER_RUNNER_HOST_ENV):
        return Endpoint(address=host, source=DAGGER_RUNNER_HOST_ENV, local=is_local_address(host))
    return Endpoint(
        address="the engine the Dagger CLI starts",
        source="no runner host",
        local=True,
        default=True,
    )


def current(engine: str) -> Endpoint:
    """`engine`'s endpoint (docker, podman, dagger) in this process's environment."""
    home = Path(os.path.expanduser("~"))
    if engine == "podman":
        return podman_endpoint(os.environ, home)
    if engine == "dagger":
        return dagger_endpoint(os.environ)
    return docker_endpoint(os.environ, home)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
