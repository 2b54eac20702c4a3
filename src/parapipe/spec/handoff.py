"""Outputs that would collide at hand-off: two direct needs of one step whose outputs land on
the same path of its workdir (or one inside the other), so that one would silently overwrite
the other. The spec shows it from the declared paths; the run checks the content again."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping, Sequence

from yaml.nodes import Node

from parapipe.model import Step, handoff_folder
from parapipe.spec.reader import NodeReader


def handed_on_paths(step: Step) -> list[str]:
    """Where `step`'s declared outputs land in a dependent's workdir."""
    folder = handoff_folder(step.matrix)
    return [posixpath.join(folder, output) if folder else output for output in step.outputs]


def first_overlap(paths: Iterable[tuple[str, str]]) -> tuple[str, str, str, str] | None:
    """Among `(path, owner)` pairs, two of different owners where one path is the other or
    inside it: `(owner, path, other owner, other path)`, the outer path first; else None."""
    return next(overlaps(paths), None)


def overlaps(paths: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, str, str]]:
    """Every such pair, as `first_overlap` gives one."""
    # In component order a path's descendants follow it at once, so the paths that contain the
    # current one are exactly the chain kept in `outer`.
    ordered = sorted((tuple(path.split("/")), owner) for path, owner in paths)
    outer: list[tuple[tuple[str, ...], str]] = []
    for parts, owner in ordered:
        while outer and outer[-1][0] != parts[: len(outer[-1][0])]:
            outer.pop()
        for outer_parts, outer_owner in outer:
            if outer_owner != owner:
                yield outer_owner, "/".join(outer_parts), owner, "/".join(parts)
        outer.append((parts, owner))


def check_handoff_overlaps(
    reader: NodeReader,
    steps: Mapping[str, Step],
    need_nodes: Mapping[str, Sequence[tuple[str, Node]]],
) -> None:
    """A located error for the first step two of whose direct needs hand on overlapping paths.
    `need_nodes` are the needs as written (matrix steps by their own name), for the location."""
    checked: set[tuple[str, ...]] = set()
    for step in steps.values():
        if step.needs in checked:
            continue  # the instances of a matrix step share their needs
        checked.add(step.needs)
        overlap = first_overlap(
            (path, need) for need in step.needs for path in handed_on_paths(steps[need])
        )
        if overlap is None:
            continue
        first, first_path, second, second_path = overlap
        written = step.matrix.step if step.matrix else step.name
        nodes = dict(need_nodes[written])
        node = nodes.get(_written(steps[second])) or nodes[_written(steps[first])]
        where = (
            f"'{first_path}'"
            if first_path == second_path
            else f"'{second_path}' inside '{first_path}'"
        )
        raise reader.fail(
            f"step '{written}' needs '{first}' and '{second}', whose outputs both hand on {where}:"
            " one would overwrite the other; rename one of the outputs",
            node,
        )


def _written(step: Step) -> str:
    return step.matrix.step if step.matrix else step.name
