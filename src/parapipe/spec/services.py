"""`services` (top level) and a step's `services: [db]`. Each reader raises `SpecError` at the
node at fault.

A service's name is its hostname on the step's network, so it must be an RFC 1123 label.
Services cannot name services: a service runs beside a step, not beside another service, so
there is no graph of services and no cycle to find.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from yaml.nodes import MappingNode, Node

from parapipe.errors import did_you_mean
from parapipe.model import Readiness, Service, Step
from parapipe.spec.data import SECRET_NAME
from parapipe.spec.execution import duration
from parapipe.spec.reader import NodeReader
from parapipe.spec.yaml_nodes import Entry, is_null, kind, quoted

SERVICE_KEYS: Final = ("image", "run", "env", "secrets", "ready")
READY_KEYS: Final = ("run", "timeout", "interval")
# RFC 1123: letters, digits and '-', not at either end, at most 63 characters.
HOSTNAME_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def read_services(reader: NodeReader, entry: Entry | None) -> dict[str, Service]:
    """The top-level `services`, by name, in file order; none when it is left out."""
    if entry is None or is_null(entry.value):
        return {}
    node = entry.value
    if not isinstance(node, MappingNode):
        raise reader.fail(
            f"'services' must be a mapping of service names to services, not {kind(node)}", node
        )
    services: dict[str, Service] = {}
    by_lowercase: dict[str, str] = {}
    for service_entry in reader.entries(node, "'services'"):
        name = service_entry.key
        if not HOSTNAME_LABEL.fullmatch(name):
            raise reader.fail(
                f"invalid service name {quoted(name)}: it is the service's hostname, so use"
                " letters, digits and '-' (not first or last), at most 63 characters",
                service_entry.key_node,
            )
        # Hostnames are case-insensitive: `DB` and `db` would be one host.
        clash = by_lowercase.setdefault(name.lower(), name)
        if clash != name:
            raise reader.fail(
                f"service '{name}' differs from service '{clash}' only in case: hostnames"
                " ignore case",
                service_entry.key_node,
            )
        services[name] = _service(reader, service_entry)
    return services


def _service(reader: NodeReader, entry: Entry) -> Service:
    name, node = entry.key, entry.value
    where = f"service '{name}'"
    if not isinstance(node, MappingNode):
        if is_null(node):
            node = MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
        else:
            raise reader.fail(
                f"{where} must be a mapping such as '{{image: postgres}}', not {kind(node)}", node
            )
    for key_entry in reader.entries(node, where):
        if key_entry.key == "services":
            raise reader.fail(
                f"{where} cannot name services: services run beside steps, not beside"
                " other services",
                key_entry.key_node,
            )
    keys = reader.mapping(node, where, SERVICE_KEYS)
    image = reader.string(keys["image"].value, f"'image' of {where}") if "image" in keys else None
    if image is not None and not image.strip():
        raise reader.fail(f"'image' of {where} must not be empty", keys["image"].value)
    what = f"'run' of {where}"
    run = reader.commands(keys["run"].value, what, required=True) if "run" in keys else ()
    env = reader.env(keys["env"].value, f"'env' of {where}") if "env" in keys else {}
    secrets: tuple[str, ...] = ()
    if "secrets" in keys:
        what = f"'secrets' of {where}"
        invalid = f"invalid secret name {{name}} in {what}: it becomes an environment variable"
        secrets = reader.unique_names(keys["secrets"].value, what, SECRET_NAME, invalid)
    ready = _ready(reader, keys["ready"], where) if "ready" in keys else None
    return Service(
        name=name,
        image=image,
        run=run,
        env=env,
        secrets=secrets,
        ready=ready,
        location=reader.at(entry.key_node),
    )


def _ready(reader: NodeReader, entry: Entry, where: str) -> Readiness:
    node = entry.value
    if not isinstance(node, MappingNode):
        raise reader.fail(
            f"'ready' of {where} must be a mapping such as '{{run: pg_isready}}', not {kind(node)}",
            node,
        )
    ready_where = f"'ready' of {where}"
    keys = reader.mapping(node, ready_where, READY_KEYS)
    if "run" not in keys:
        raise reader.fail(
            f"{ready_where} has no 'run': the command that exits 0 once the service is ready",
            entry.key_node,
        )
    run_node = keys["run"].value
    command = reader.string(run_node, f"'run' of {ready_where}")
    if not command.strip():
        raise reader.fail(f"'run' of {ready_where} must not be empty", run_node)
    readiness = Readiness(run=command)
    if "timeout" in keys:
        readiness = replace(readiness, timeout=duration(reader, keys["timeout"].value, ready_where))
    if "interval" in keys:
        interval = duration(reader, keys["interval"].value, ready_where, key="interval")
        readiness = replace(readiness, interval=interval)
    return readiness


def with_step_services(
    reader: NodeReader,
    steps_entry: Entry | None,
    steps: Mapping[str, Step],
    services: Mapping[str, Service],
) -> dict[str, Step]:
    """`steps` with each one's `services: [...]` read from its node and checked against
    `services` (an unknown one gets "did you mean")."""
    result = dict(steps)
    if steps_entry is None or not isinstance(steps_entry.value, MappingNode):
        return result
    for step_entry in reader.entries(steps_entry.value, "'steps'"):
        node = step_entry.value
        if not isinstance(node, MappingNode):
            continue
        for key_entry in reader.entries(node, f"step '{step_entry.key}'"):
            if key_entry.key == "services":
                names = _step_services(reader, key_entry.value, step_entry.key, services)
                # A matrix step is in `steps` as its instances, each of which gets the services.
                for name, step in steps.items():
                    origin = step.matrix.step if step.matrix is not None else name
                    if origin == step_entry.key:
                        result[name] = replace(result[name], services=names)
    return result


def _step_services(
    reader: NodeReader, node: Node, step: str, services: Mapping[str, Service]
) -> tuple[str, ...]:
    what = f"'services' of step '{step}'"
    names: list[str] = []
    for item in reader.string_items(node, what):
        name = str(item.value)
        if name not in services:
            if not services:
                raise reader.fail(
                    f"step '{step}' names service {quoted(name)}, but the spec has no top-level"
                    " 'services'",
                    item,
                )
            hint = did_you_mean(name, services)
            raise reader.fail(
                f"step '{step}' names service {quoted(name)}, which is not a service{hint}", item
            )
        if name in names:
            raise reader.fail(f"{quoted(name)} is listed twice in {what}", item)
        names.append(name)
    return tuple(names)
