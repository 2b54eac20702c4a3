"""The YAML layer of spec loading: nodes that keep their positions, read without losing them.

PyYAML's constructors throw positions away and silently keep the last of two equal keys, so the
spec is only composed into nodes and read from those here, each error pointing at its node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeGuard, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from parapipe.errors import SpecError
from parapipe.model import Location

_T = TypeVar("_T")

# libyaml's composer is several times faster than the pure-Python one; both give the same nodes.
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)
# Only its scalar converters are used: they hold no state between calls.
_CONSTRUCTOR = SafeConstructor()

TAG_STR = "tag:yaml.org,2002:str"
TAG_INT = "tag:yaml.org,2002:int"
TAG_FLOAT = "tag:yaml.org,2002:float"
TAG_BOOL = "tag:yaml.org,2002:bool"
TAG_NULL = "tag:yaml.org,2002:null"
TAG_MERGE = "tag:yaml.org,2002:merge"

_SCALAR_KINDS = {
    TAG_STR: "a string",
    TAG_INT: "an integer",
    TAG_FLOAT: "a number",
    TAG_BOOL: "a boolean",
    TAG_NULL: "null",
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:binary": "binary data",
}


class Entry(NamedTuple):
    """One `key: value` pair of a mapping, with the nodes errors point at."""

    key: str
    key_node: Node
    value: Node


def parse(text: str, file: str) -> Node | None:
    """Compose `text` into its root node (None for an empty document)."""
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        raise SpecError(f"invalid YAML: {_describe(exc)}", _mark_location(exc, file)) from exc
    except yaml.reader.ReaderError as exc:
        location = _offset_location(text, int(exc.position), file)
        reason = f"character #x{int(exc.character):04x} is not allowed ({exc.reason})"
        raise SpecError(f"invalid YAML: {reason}", location) from exc
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(
            f"invalid YAML: {first_line}", Location(file=file, line=1, column=1)
        ) from exc


def _describe(exc: yaml.MarkedYAMLError) -> str:
    message = (exc.problem or str(exc).splitlines()[0]).removeprefix("but ")
    if exc.context:
        context = exc.context
        if exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            context += f" on line {exc.context_mark.line + 1}"
        message += f" ({context})"
    return message


def _mark_location(exc: yaml.MarkedYAMLError, file: str) -> Location:
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return Location(file=file, line=1, column=1)
    return Location(file=file, line=mark.line + 1, column=mark.column + 1)


def _offset_location(text: str, offset: int, file: str) -> Location:
    line_start = text.rfind("\n", 0, offset) + 1
    return Location(file=file, line=text.count("\n", 0, offset) + 1, column=offset - line_start + 1)


def quoted(text: str) -> str:
    """`text` in quotes for a one-line message, escaped if it holds line breaks or controls."""
    return f"'{text}'" if text.isprintable() else repr(text)


def location(node: Node, file: str) -> Location:
    mark = node.start_mark
    return Location(file=file, line=mark.line + 1, column=mark.column + 1)


def kind(node: Node) -> str:
    """What the node holds, in words for an error message: 'a string', 'a list', 'null'..."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _SCALAR_KINDS.get(node.tag, f"a value tagged {quoted(node.tag)}")


def is_string(node: Node) -> TypeGuard[ScalarNode]:
    return isinstance(node, ScalarNode) and node.tag == TAG_STR


def is_null(node: Node) -> TypeGuard[ScalarNode]:
    return isinstance(node, ScalarNode) and node.tag == TAG_NULL


def scalar_text(node: ScalarNode) -> str:
    return str(node.value)


def as_bool(node: ScalarNode, file: str) -> bool:
    return _convert(_CONSTRUCTOR.construct_yaml_bool, node, file, "a boolean")


def as_int(node: ScalarNode, file: str) -> int:
    return _convert(_CONSTRUCTOR.construct_yaml_int, node, file, "an integer")


def as_float(node: ScalarNode, file: str) -> float:
    return _convert(_CONSTRUCTOR.construct_yaml_float, node, file, "a number")


def _convert(convert: Callable[[ScalarNode], _T], node: ScalarNode, file: str, kind: str) -> _T:
    # Plain scalars only get these tags when they parse; an explicit `!!int x` may not.
    try:
        return convert(node)
    except (ValueError, KeyError) as exc:
        message = f"{quoted(scalar_text(node))} is tagged as {kind} but is not one"
        raise SpecError(message, location(node, file)) from exc


def entries(node: MappingNode, file: str, where: str) -> list[Entry]:
    """The mapping's pairs in file order, each key once.

    A key given twice is an error at its second occurrence. Keys are read as the text written,
    so `on:` is the key 'on' rather than YAML 1.1's boolean. Merge keys (`<<: *anchor`) are
    honoured: keys written in the mapping itself override merged ones, earlier merges win.
    """
    return _entries(node, file, where, frozenset())


def _entries(node: MappingNode, file: str, where: str, merging: frozenset[int]) -> list[Entry]:
    own: dict[str, Entry] = {}
    for key_node, value in node.value:
        if key_node.tag == TAG_MERGE:
            continue
        if not isinstance(key_node, ScalarNode):
            raise SpecError(
                f"keys in {where} must be strings, not {kind(key_node)}", location(key_node, file)
            )
        key = scalar_text(key_node)
        first = own.get(key)
        if first is not None:
            first_line = first.key_node.start_mark.line + 1
            raise SpecError(
                f"duplicate key {quoted(key)} in {where} (first defined on line {first_line})",
                location(key_node, file),
            )
        own[key] = Entry(key, key_node, value)

    result: dict[str, Entry] = {}
    for key_node, value in node.value:
        if key_node.tag != TAG_MERGE:
            key = scalar_text(key_node)
            result[key] = own[key]
            continue
        for merged in _merged(value, file, where, merging | {id(node)}):
            if merged.key not in own and merged.key not in result:
                result[merged.key] = merged
    return list(result.values())


def _merged(value: Node, file: str, where: str, merging: frozenset[int]) -> list[Entry]:
    sources = value.value if isinstance(value, SequenceNode) else [value]
    merged: list[Entry] = []
    for source in sources:
        if not isinstance(source, MappingNode):
            raise SpecError(
                f"'<<' in {where} must merge a mapping or a list of mappings, not {kind(source)}",
                location(source, file),
            )
        if id(source) in merging:
            raise SpecError(f"'<<' in {where} merges a mapping into itself", location(source, file))
        merged.extend(_entries(source, file, where, merging))
    return merged
