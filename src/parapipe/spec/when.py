"""Which runs a step takes part in: `tags` (e.g. `pre-push`) and `when: {changed: [globs]}`.

Each reader raises `SpecError` at the node at fault.
"""

from __future__ import annotations

import difflib
import re
from typing import Final

from yaml.nodes import MappingNode, Node

from parapipe.globs import glob_problem
from parapipe.spec import yaml_nodes
from parapipe.spec.yaml_nodes import kind, quoted

WHEN_KEYS: Final = ("changed",)
TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def read_tags(node: Node, where: str, file: str) -> tuple[str, ...]:
    """A tag or a list of tags: letters, digits, '_', '.', '-'."""
    what = f"'tags' of {where}"
    invalid = f"invalid tag {{name}} in {what}: use letters, digits, '_', '.' and '-'"
    return yaml_nodes.unique_names(node, what, file, TAG, invalid)


def read_when(node: Node, where: str, file: str) -> tuple[str, ...]:
    """`when: {changed: GLOBS}`: the globs, relative to the source folder."""
    what = f"'when' of {where}"
    if not isinstance(node, MappingNode):
        raise yaml_nodes.error_at(
            f"{what} must be a mapping such as '{{changed: [src/**]}}', not {kind(node)}",
            node,
            file,
        )
    entries = yaml_nodes.entries(node, file, what)
    for entry in entries:
        if entry.key not in WHEN_KEYS:
            matches = difflib.get_close_matches(entry.key, WHEN_KEYS, n=1)
            hint = f" (did you mean '{matches[0]}'?)" if matches else ""
            raise yaml_nodes.error_at(
                f"unknown key {quoted(entry.key)} in {what}{hint}", entry.key_node, file
            )
    if not entries:
        raise yaml_nodes.error_at(
            f"{what} is empty: give 'changed', the globs the step watches", node, file
        )
    changed = entries[0].value
    what = f"'when.changed' of {where}"
    globs: list[str] = []
    for item in yaml_nodes.string_items(changed, what, file):
        glob = yaml_nodes.scalar_text(item)
        problem = glob_problem(glob)
        if problem is not None:
            raise yaml_nodes.error_at(f"glob {quoted(glob)} in {what} {problem}", item, file)
        globs.append(glob)
    if not globs:
        raise yaml_nodes.error_at(
            f"{what} must not be empty (leave 'when' out to always run)", changed, file
        )
    if all(glob.startswith("!") for glob in globs):
        raise yaml_nodes.error_at(
            f"{what} only takes files back ('!'): it would select nothing", changed, file
        )
    return tuple(globs)
