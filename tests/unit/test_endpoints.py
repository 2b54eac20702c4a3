"""Where each engine's client connects, and whether parapipe counts the engine as local."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from parapipe.engine import endpoints
from parapipe.engine.endpoints import Endpoint
from parapipe.model import RunInfo


def write_docker_context(home: Path, name: str, host: str, *, current: bool = False) -> None:
    meta = home / ".docker/contexts/meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    document = {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}}
    (meta / "meta.json").write_text(json.dumps(document))
    if current:
        (home / ".docker/config.json").write_text(json.dumps({"currentContext": name}))


def test_docker_without_settings_is_the_local_default(tmp_path: Path) -> None:
    found = endpoints.docker_endpoint({}, tmp_path)
    assert found == Endpoint(
        address="unix:///var/run/docker.sock",
        source="the client's default",
        local=True,
        default=True,
    )
    assert found.label() is None


def test_docker_host_tcp_and_ssh_are_remote_and_named(tmp_path: Path) -> None:
    for host in ("tcp://127.0.0.1:2399", "ssh://ci@builder"):
        found = endpoints.docker_endpoint({"DOCKER_HOST": host}, tmp_path)
        assert (found.address, found.source, found.local) == (host, "DOCKER_HOST", False)
        assert found.label() == host


def test_docker_host_unix_socket_is_local_but_still_named(tmp_path: Path) -> None:
    found = endpoints.docker_endpoint({"DOCKER_HOST": "unix:///srv/d.sock"}, tmp_path)
    assert found.local
    assert found.label() == "unix:///srv/d.sock"


def test_the_current_docker_context_gives_its_endpoint(tmp_path: Path) -> None:
    write_docker_context(tmp_path, "ci", "ssh://ci@builder", current=True)
    found = endpoints.docker_endpoint({}, tmp_path)
    assert (found.address, found.source, found.local) == (
        "ssh://ci@builder",
        "docker context 'ci'",
        False,
    )


def test_docker_context_env_beats_the_config_and_docker_host_beats_both(tmp_path: Path) -> None:
    write_docker_context(tmp_path, "ci", "ssh://ci@builder", current=True)
    write_docker_context(tmp_path, "other", "tcp://10.0.0.5:2376")
    assert endpoints.docker_endpoint({"DOCKER_CONTEXT": "other"}, tmp_path).address == (
        "tcp://10.0.0.5:2376"
    )
    both = {"DOCKER_CONTEXT": "other", "DOCKER_HOST": "tcp://1.2.3.4:1"}
    assert endpoints.docker_endpoint(both, tmp_path).address == "tcp://1.2.3.4:1"


def test_a_context_without_metadata_is_named_and_not_known_local(tmp_path: Path) -> None:
    found = endpoints.docker_endpoint({"DOCKER_CONTEXT": "gone"}, tmp_path)
    assert (found.address, found.local) == ("docker context 'gone'", False)


def test_podman_container_host_and_connections(tmp_path: Path) -> None:
    assert endpoints.podman_endpoint({}, tmp_path).default
    found = endpoints.podman_endpoint({"CONTAINER_HOST": "ssh://core@vm/run/podman.sock"}, tmp_path)
    assert (found.source, found.local) == ("CONTAINER_HOST", False)
    conf = tmp_path / ".config/containers/containers.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        '[engine]\nactive_service = "vm"\n'
        '[engine.service_destinations.vm]\nuri = "ssh://core@vm:22/run/podman/podman.sock"\n'
    )
    # A default connection alone leaves podman local, as podman itself does without --remote.
    assert endpoints.podman_endpoint({}, tmp_path).default
    named = endpoints.podman_endpoint({"CONTAINER_CONNECTION": "vm"}, tmp_path)
    assert (named.address, named.local) == ("ssh://core@vm:22/run/podman/podman.sock", False)
    conf.write_text(conf.read_text().replace("[engine]\n", "[engine]\nremote = true\n"))
    assert endpoints.podman_endpoint({}, tmp_path).source == "podman connection 'vm'"


def test_dagger_runner_host() -> None:
    assert endpoints.dagger_endpoint({}).label() is None
    found = endpoints.dagger_endpoint({endpoints.DAGGER_RUNNER_HOST_ENV: "tcp://10.0.0.9:1234"})
    assert (found.label(), found.local) == ("tcp://10.0.0.9:1234", False)


def test_the_first_line_names_an_engine_away_from_its_default(tmp_path: Path) -> None:
    info = RunInfo(
        run_id="r",
        pipeline="p",
        spec_path=tmp_path,
        engine="docker",
        engine_reason="--engine docker",
        engine_address="tcp://127.0.0.1:2399",
        steps=(),
        needs={},
        jobs=1,
        run_dir=tmp_path,
    )
    assert info.engine_at == "docker at tcp://127.0.0.1:2399"
