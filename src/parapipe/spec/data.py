"""What a step keeps and is given beyond its commands: `outputs`, `inputs`, `cache`, `caches`
and `secrets`. Each reader raises `SpecError` at the node at fault."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from yaml.nodes import MappingNode, Node, ScalarNode

from parapipe.spec import yaml_nodes
from parapipe.spec.reader import NodeReader
from parapipe.spec.when import read_globs
from parapipe.spec.yaml_nodes import Entry, kind, quoted

DATA_KEYS: Final = ("outputs", "inputs", "cache", "caches", "secrets")
CACHE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SECRET_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    outputs: tuple[str, ...] = ()
    inputs: tuple[str, ...] | None = None
    cache: bool = True
    caches: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()


def read_data(reader: NodeReader, keys: Mapping[str, Entry], where: str) -> DataOptions:
    return DataOptions(
        outputs=_outputs(reader, keys["outputs"].value, where) if "outputs" in keys else (),
        inputs=_inputs(reader, keys["inputs"].value, where) if "inputs" in keys else None,
        cache=_boolean(reader, keys["cache"].value, f"'cache' of {where}")
        if "cache" in keys
        else True,
        caches=read_caches(reader, keys["caches"].value, where) if "caches" in keys else {},
        secrets=_secrets(reader, keys["secrets"].value, where) if "secrets" in keys else (),
    )


def _outputs(reader: NodeReader, node: Node, where: str) -> tuple[str, ...]:
    """Paths relative to the workdir, normalised (`dist/` and `./dist` are `dist`)."""
    what = f"'outputs' of {where}"
    paths: list[str] = []
    for item in reader.string_items(node, what):
        text = yaml_nodes.scalar_text(item).strip()
        if not text:
            raise reader.fail(f"{what} has an empty path", item)
        if text.startswith("/"):
            raise reader.fail(
                f"output {quoted(text)} of {where} is absolute: give it relative to the workdir",
                item,
            )
        path = posixpath.normpath(text)
        if path == ".." or path.startswith("../"):
            raise reader.fail(f"output {quoted(text)} of {where} climbs out of the workdir", item)
        if path == ".":
            raise reader.fail(
                f"output {quoted(text)} of {where} is the whole workdir: name what it makes",
                item,
            )
        if path in paths:
            raise reader.fail(f"{quoted(text)} is listed twice in {what}", item)
        paths.append(path)
    return tuple(paths)


def _inputs(reader: NodeReader, node: Node, where: str) -> tuple[str, ...]:
    what = f"'inputs' of {where}"
    globs = read_globs(reader, node, what)
    if not globs:
        raise reader.fail(
            f"{what} must not be empty (leave it out to depend on the whole source)", node
        )
    return globs


def read_caches(reader: NodeReader, node: Node, where: str) -> dict[str, str]:
    what = f"'caches' of {where}"
    if not isinstance(node, MappingNode):
        raise reader.fail(
            f"{what} must be a mapping of cache names to paths, such as"
            f" '{{pip: /root/.cache/pip}}', not {kind(node)}",
            node,
        )
    caches: dict[str, str] = {}
    for entry in reader.entries(node, what):
        if not CACHE_NAME.fullmatch(entry.key):
            raise reader.fail(
                f"invalid cache name {quoted(entry.key)} in {what}:"
                " use letters, digits, '_', '.' and '-'",
                entry.key_node,
            )
        if not yaml_nodes.is_string(entry.value):
            raise reader.fail(
                f"the path of cache {quoted(entry.key)} must be a string, not {kind(entry.value)}",
                entry.value,
            )
        path = yaml_nodes.scalar_text(entry.value)
        if not path.startswith("/"):
            raise reader.fail(
                f"the path of cache {quoted(entry.key)} must be absolute, not {quoted(path)}",
                entry.value,
            )
        caches[entry.key] = posixpath.normpath(path)
    return caches


def _secrets(reader: NodeReader, node: Node, where: str) -> tuple[str, ...]:
    what = f"'secrets' of {where}"
    invalid = f"invalid secret name {{name}} in {what}: it becomes an environment variable"
    return reader.unique_names(node, what, SECRET_NAME, invalid)


def _boolean(reader: NodeReader, node: Node, what: str) -> bool:
    if not isinstance(node, ScalarNode) or node.tag != yaml_nodes.TAG_BOOL:
        raise reader.fail(f"{what} must be true or false, not {kind(node)}", node)
    return reader.as_bool(node)
