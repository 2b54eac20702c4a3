"""Which runs a step takes part in: `tags` (e.g. `pre-push`) and `when: {changed: [globs]}`.

Each reader raises `SpecError` at the node at fault.
"""

from __future__ import annotations

import re
from typing import Final

from yaml.nodes import MappingNode, Node

from parapipe.globs import glob_problem
from parapipe.spec import yaml_nodes
from parapipe.spec.reader import NodeReader
from parapipe.spec.yaml_nodes import kind, quoted

WHEN_KEYS: Final = ("changed",)
TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def read_tags(reader: NodeReader, node: Node, where: str) -> tuple[str, ...]:
    """A tag or a list of tags: letters, digits, '_', '.', '-'."""
    what = f"'tags' of {where}"
    invalid = f"invalid tag {{name}} in {what}: use letters, digits, '_', '.' and '-'"
    return reader.unique_names(node, what, TAG, invalid)


def read_when(reader: NodeReader, node: Node, where: str) -> tuple[str, ...]:
    """`when: {changed: GLOBS}`: the globs, relative to the source folder."""
    what = f"'when' of {where}"
    if not isinstance(node, MappingNode):
        raise reader.fail(
            f"{what} must be a mapping such as '{{changed: [src/**]}}', not {kind(node)}",
            node,
        )
    entries = reader.mapping(node, what, WHEN_KEYS)
    if "changed" not in entries:
        raise reader.fail(f"{what} is empty: give 'changed', the globs the step watches", node)
    changed = entries["changed"].value
    what = f"'when.changed' of {where}"
    globs = read_globs(reader, changed, what)
    if not globs:
        raise reader.fail(f"{what} must not be empty (leave 'when' out to always run)", changed)
    if all(glob.startswith("!") for glob in globs):
        raise reader.fail(f"{what} only takes files back ('!'): it would select nothing", changed)
    return tuple(globs)


def read_globs(reader: NodeReader, node: Node, what: str) -> tuple[str, ...]:
    """A glob or a list of globs, relative to the source folder (`when.changed`, `inputs`)."""
    globs: list[str] = []
    for item in reader.string_items(node, what):
        glob = yaml_nodes.scalar_text(item)
        problem = glob_problem(glob)
        if problem is not None:
            raise reader.fail(f"glob {quoted(glob)} in {what} {problem}", item)
        globs.append(glob)
    return tuple(globs)
