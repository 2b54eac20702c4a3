"""The one node reader of spec loading: it carries its file, so every reader of a part of the
spec (image, steps, execution, data, when) points its errors at FILE:LINE:COL the same way."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from parapipe.errors import Location, SpecError, did_you_mean
from parapipe.spec import yaml_nodes
from parapipe.spec.yaml_nodes import Entry, is_string, kind, quoted

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class NodeReader:
    """Reads the nodes of one spec file; every method raises `SpecError` at the node at fault."""

    def __init__(self, file: str) -> None:
        self.file = file

    def at(self, node: Node) -> Location:
        return yaml_nodes.location(node, self.file)

    def fail(self, message: str, node: Node) -> SpecError:
        return SpecError(message, self.at(node))

    # -- mappings -------------------------------------------------------------------------------

    def entries(self, node: MappingNode, where: str) -> list[Entry]:
        return yaml_nodes.entries(node, self.file, where)

    def mapping(
        self,
        node: MappingNode,
        where: str,
        known: Iterable[str],
        not_yet: Iterable[str] = (),
    ) -> dict[str, Entry]:
        """The mapping's entries by key, after rejecting unknown and not-yet-supported keys."""
        known, not_yet = tuple(known), frozenset(not_yet)
        result: dict[str, Entry] = {}
        for entry in self.entries(node, where):
            if entry.key in not_yet:
                raise self.fail(
                    f"{quoted(entry.key)} is not supported yet by this version of parapipe",
                    entry.key_node,
                )
            if entry.key not in known:
                hint = did_you_mean(entry.key, known)
                raise self.fail(f"unknown key {quoted(entry.key)} in {where}{hint}", entry.key_node)
            result[entry.key] = entry
        return result

    # -- scalars --------------------------------------------------------------------------------

    def folder(self, node: Node, what: str, base: Path) -> Path:
        folder = absolute(base, self.string(node, what))
        if not folder.is_dir():
            raise self.fail(f"{what} is not a folder: {shown(folder)}", node)
        return folder

    def string(self, node: Node, what: str) -> str:
        if not is_string(node):
            raise self.fail(f"{what} must be a string, not {kind(node)}", node)
        return yaml_nodes.scalar_text(node)

    def as_bool(self, node: ScalarNode) -> bool:
        return yaml_nodes.as_bool(node, self.file)

    def as_int(self, node: ScalarNode) -> int:
        return yaml_nodes.as_int(node, self.file)

    def as_float(self, node: ScalarNode) -> float:
        return yaml_nodes.as_float(node, self.file)

    # -- a string or a list of strings --------------------------------------------------------

    def strings(self, node: Node, what: str) -> list[tuple[str, Node]]:
        """A string or a list of strings, each with its node."""
        if is_string(node):
            return [(yaml_nodes.scalar_text(node), node)]
        if not isinstance(node, SequenceNode):
            raise self.fail(f"{what} must be a string or a list of strings, not {kind(node)}", node)
        return [(self.list_item(item, what), item) for item in node.value]

    def list_item(self, node: Node, what: str) -> str:
        if not is_string(node):
            raise self.fail(f"each item of {what} must be a string, not {kind(node)}", node)
        return yaml_nodes.scalar_text(node)

    def string_items(self, node: Node, what: str) -> list[ScalarNode]:
        """A string or a list of strings, as the nodes that hold them."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        strings: list[ScalarNode] = []
        for item in items:
            if not is_string(item):
                raise self.fail(
                    f"{what} must be a string or a list of strings, not {kind(item)}", item
                )
            strings.append(item)
        return strings

    def unique_names(
        self, node: Node, what: str, pattern: re.Pattern[str], invalid: str
    ) -> tuple[str, ...]:
        """A name or a list of names, each matching `pattern` and given once; `invalid` is the
        message for one that does not match, with `{name}` in it."""
        names: list[str] = []
        for item in self.string_items(node, what):
            name = yaml_nodes.scalar_text(item)
            if not pattern.fullmatch(name):
                raise self.fail(invalid.format(name=quoted(name)), item)
            if name in names:
                raise self.fail(f"{quoted(name)} is listed twice in {what}", item)
            names.append(name)
        return tuple(names)

    def commands(self, node: Node, what: str, *, required: bool) -> tuple[str, ...]:
        commands = self.strings(node, what)
        if required and not commands:
            raise self.fail(f"{what} must not be empty", node)
        for command, item in commands:
            if not command.strip():
                raise self.fail(f"{what} has an empty command", item)
        return tuple(command for command, _ in commands)

    # -- environments ---------------------------------------------------------------------------

    def env(self, node: Node, what: str) -> dict[str, str]:
        if not isinstance(node, MappingNode):
            raise self.fail(f"{what} must be a mapping of names to values, not {kind(node)}", node)
        env: dict[str, str] = {}
        for entry in self.entries(node, what):
            if not ENV_NAME.fullmatch(entry.key):
                raise self.fail(
                    f"invalid variable name {quoted(entry.key)} in {what}:"
                    " use letters, digits and '_', not starting with a digit",
                    entry.key_node,
                )
            env[entry.key] = self.env_value(entry, what)
        return env

    def env_value(self, entry: Entry, what: str) -> str:
        value = entry.value
        if isinstance(value, ScalarNode):
            # Numbers and booleans are accepted as GitHub Actions accepts them; quote a value to
            # keep it exactly as written (`PY: 3.10` is the number 3.1).
            if value.tag == yaml_nodes.TAG_STR:
                return yaml_nodes.scalar_text(value)
            if value.tag == yaml_nodes.TAG_BOOL:
                return "true" if self.as_bool(value) else "false"
            if value.tag == yaml_nodes.TAG_INT:
                return str(self.as_int(value))
            if value.tag == yaml_nodes.TAG_FLOAT:
                return str(self.as_float(value))
            if value.tag == yaml_nodes.TAG_NULL:
                raise self.fail(
                    f'{quoted(entry.key)} in {what} has no value; write "" for an empty string',
                    value,
                )
        raise self.fail(
            f"{quoted(entry.key)} in {what} must be a string, number or boolean, not {kind(value)}",
            value,
        )


def shown(path: Path) -> str:
    """The path as the user gave it, made relative when it lies under the current folder."""
    text = str(path)
    if path.is_absolute():
        with contextlib.suppress(ValueError, OSError):  # elsewhere, or the cwd is gone
            text = str(path.relative_to(Path.cwd()))
    # Messages are one line: a name holding a line break is shown escaped.
    return text if text.isprintable() else repr(text)[1:-1]


def absolute(base: Path, path: str) -> Path:
    """`path` resolved against `base` and normalised, without following symlinks (as compose)."""
    return Path(os.path.normpath(base / path))
