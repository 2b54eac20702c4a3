"""What a step keeps and is given beyond its commands: `outputs`, `inputs`, `cache`, `caches`
and `secrets`. Each reader raises `SpecError` at the node at fault."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from yaml.nodes import MappingNode, Node, ScalarNode

from parapipe.globs import glob_problem
from parapipe.spec import yaml_nodes
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


def read_data(keys: Mapping[str, Entry], where: str, file: str) -> DataOptions:
    return DataOptions(
        outputs=_outputs(keys["outputs"].value, where, file) if "outputs" in keys else (),
        inputs=_inputs(keys["inputs"].value, where, file) if "inputs" in keys else None,
        cache=_boolean(keys["cache"].value, f"'cache' of {where}", file)
        if "cache" in keys
        else True,
        caches=_caches(keys["caches"].value, where, file) if "caches" in keys else {},
        secrets=_secrets(keys["secrets"].value, where, file) if "secrets" in keys else (),
    )


def _outputs(node: Node, where: str, file: str) -> tuple[str, ...]:
    """Paths relative to the workdir, normalised (`dist/` and `./dist` are `dist`)."""
    what = f"'outputs' of {where}"
    paths: list[str] = []
    for item in yaml_nodes.string_items(node, what, file):
        text = yaml_nodes.scalar_text(item).strip()
        if not text:
            raise yaml_nodes.error_at(f"{what} has an empty path", item, file)
        if text.startswith("/"):
            raise yaml_nodes.error_at(
                f"output {quoted(text)} of {where} is absolute: give it relative to the workdir",
                item,
                file,
            )
        path = posixpath.normpath(text)
        if path == ".." or path.startswith("../"):
            raise yaml_nodes.error_at(
                f"output {quoted(text)} of {where} climbs out of the workdir", item, file
            )
        if path == ".":
            raise yaml_nodes.error_at(
                f"output {quoted(text)} of {where} is the whole workdir: name what it makes",
                item,
                file,
            )
        if path in paths:
            raise yaml_nodes.error_at(f"{quoted(text)} is listed twice in {what}", item, file)
        paths.append(path)
    return tuple(paths)


def _inputs(node: Node, where: str, file: str) -> tuple[str, ...]:
    what = f"'inputs' of {where}"
    globs: list[str] = []
    for item in yaml_nodes.string_items(node, what, file):
        glob = yaml_nodes.scalar_text(item)
        problem = glob_problem(glob)
        if problem is not None:
            raise yaml_nodes.error_at(f"glob {quoted(glob)} in {what} {problem}", item, file)
        globs.append(glob)
    if not globs:
        raise yaml_nodes.error_at(
            f"{what} must not be empty (leave it out to depend on the whole source)", node, file
        )
    return tuple(globs)


def _caches(node: Node, where: str, file: str) -> dict[str, str]:
    what = f"'caches' of {where}"
    if not isinstance(node, MappingNode):
        raise yaml_nodes.error_at(
            f"{what} must be a mapping of cache names to paths, such as"
            f" '{{pip: /root/.cache/pip}}', not {kind(node)}",
            node,
            file,
        )
    caches: dict[str, str] = {}
    for entry in yaml_nodes.entries(node, file, what):
        if not CACHE_NAME.fullmatch(entry.key):
            raise yaml_nodes.error_at(
                f"invalid cache name {quoted(entry.key)} in {what}:"
                " use letters, digits, '_', '.' and '-'",
                entry.key_node,
                file,
            )
        if not yaml_nodes.is_string(entry.value):
            raise yaml_nodes.error_at(
                f"the path of cache {quoted(entry.key)} must be a string, not {kind(entry.value)}",
                entry.value,
                file,
            )
        path = yaml_nodes.scalar_text(entry.value)
        if not path.startswith("/"):
            raise yaml_nodes.error_at(
                f"the path of cache {quoted(entry.key)} must be absolute, not {quoted(path)}",
                entry.value,
                file,
            )
        caches[entry.key] = posixpath.normpath(path)
    return caches


def _secrets(node: Node, where: str, file: str) -> tuple[str, ...]:
    what = f"'secrets' of {where}"
    invalid = f"invalid secret name {{name}} in {what}: it becomes an environment variable"
    return yaml_nodes.unique_names(node, what, file, SECRET_NAME, invalid)


def _boolean(node: Node, what: str, file: str) -> bool:
    if not isinstance(node, ScalarNode) or node.tag != yaml_nodes.TAG_BOOL:
        raise yaml_nodes.error_at(f"{what} must be true or false, not {kind(node)}", node, file)
    return yaml_nodes.as_bool(node, file)
