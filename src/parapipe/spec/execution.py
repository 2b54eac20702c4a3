"""How a step executes: `timeout`, `retries`, `retry_on`, `allow_failure`, per step or in
the top-level `defaults`. Each reader raises `SpecError` at the node at fault."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from yaml.nodes import Node, ScalarNode, SequenceNode

from parapipe.spec import yaml_nodes
from parapipe.spec.reader import NodeReader
from parapipe.spec.yaml_nodes import Entry, kind, quoted

EXECUTION_KEYS: Final = ("timeout", "retries", "retry_on", "allow_failure")
MAX_RETRIES: Final = 100
TIMEOUT_WORD: Final = "timeout"  # in `retry_on`: a timed-out attempt may be retried

_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+")
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_SECONDS_PER_UNIT: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, kw_only=True)
class ExecutionOptions:
    timeout: float | None = None
    retries: int = 0
    retry_on: frozenset[int] | None = None
    retry_on_timeout: bool = True
    allow_failure: bool = False


def read_execution(
    reader: NodeReader, keys: Mapping[str, Entry], where: str, base: ExecutionOptions
) -> ExecutionOptions:
    """The options given in `keys`, over `base` (the pipeline's `defaults`)."""
    options = base
    if "timeout" in keys:
        options = replace(options, timeout=duration(reader, keys["timeout"].value, where))
    if "retries" in keys:
        options = replace(options, retries=retries(reader, keys["retries"].value, where))
    if "retry_on" in keys:
        codes, on_timeout = retry_on(reader, keys["retry_on"].value, where)
        options = replace(options, retry_on=codes, retry_on_timeout=on_timeout)
    if "allow_failure" in keys:
        value = keys["allow_failure"].value
        if not isinstance(value, ScalarNode) or value.tag != yaml_nodes.TAG_BOOL:
            raise reader.fail(
                f"'allow_failure' of {where} must be true or false, not {kind(value)}", value
            )
        options = replace(options, allow_failure=reader.as_bool(value))
    return options


def duration(reader: NodeReader, node: Node, where: str, key: str = "timeout") -> float:
    """`90s`, `10m`, `1h`, `1h30m`, `500ms` in seconds."""
    what = f"'{key}' of {where}"
    if isinstance(node, ScalarNode) and node.tag in (yaml_nodes.TAG_INT, yaml_nodes.TAG_FLOAT):
        raise reader.fail(
            f"{what} needs a unit: '{node.value}s', '{node.value}m' or '{node.value}h'", node
        )
    if not yaml_nodes.is_string(node):
        raise reader.fail(
            f"{what} must be a duration such as '90s', '10m' or '1h', not {kind(node)}", node
        )
    text = yaml_nodes.scalar_text(node).strip()
    if not _DURATION.fullmatch(text):
        raise reader.fail(
            f"{what} must be a duration such as '90s', '10m' or '1h', not {quoted(text)}",
            node,
        )
    seconds = sum(float(n) * _SECONDS_PER_UNIT[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise reader.fail(f"{what} must be longer than 0", node)
    return seconds


def retries(reader: NodeReader, node: Node, where: str) -> int:
    what = f"'retries' of {where}"
    if not isinstance(node, ScalarNode) or node.tag != yaml_nodes.TAG_INT:
        raise reader.fail(f"{what} must be a whole number, not {kind(node)}", node)
    count = reader.as_int(node)
    if not 0 <= count <= MAX_RETRIES:
        raise reader.fail(f"{what} must be between 0 and {MAX_RETRIES}, not {count}", node)
    return count


def retry_on(reader: NodeReader, node: Node, where: str) -> tuple[frozenset[int], bool]:
    """Exit codes (0-255) worth a retry, and whether the word `timeout` was among them."""
    what = f"'retry_on' of {where}"
    items = node.value if isinstance(node, SequenceNode) else [node]
    if isinstance(node, SequenceNode) and not items:
        raise reader.fail(f"{what} must not be empty (leave it out to retry any failure)", node)
    codes: set[int] = set()
    on_timeout = False
    for item in items:
        if yaml_nodes.is_string(item) and yaml_nodes.scalar_text(item) == TIMEOUT_WORD:
            on_timeout = True
            continue
        if not isinstance(item, ScalarNode) or item.tag != yaml_nodes.TAG_INT:
            raise reader.fail(
                f"each item of {what} must be an exit code (1-255) or 'timeout', not {kind(item)}",
                item,
            )
        code = reader.as_int(item)
        if not 1 <= code <= 255:
            raise reader.fail(f"{what}: {code} is not a failing exit code (1-255)", item)
        codes.add(code)
    return frozenset(codes), on_timeout
