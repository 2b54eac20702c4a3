"""`steps.<name>.matrix`: read it and expand it into one combination of values per instance.

The expansion is GitHub Actions' (`jobs.<id>.strategy.matrix`): the cartesian product of the
declared keys (the first key varies slowest), minus each combination that matches every
key:value of an `exclude` entry, then each `include` entry in turn. An include entry is added to
every combination in which it overwrites none of the declared (original) values, overwriting
values that earlier include entries added; when it fits no combination, it becomes a new one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from parapipe.errors import did_you_mean
from parapipe.model import MatrixInstance, MatrixSpec, Step, instance_name
from parapipe.spec import yaml_nodes
from parapipe.spec.reader import ENV_NAME, NodeReader
from parapipe.spec.yaml_nodes import Entry, kind, quoted

MAX_INSTANCES: Final = 256  # GitHub Actions' limit of jobs per matrix
# Values name the instance (`test[SHARD=0]`) and the folder its outputs are handed on in.
_NOT_IN_VALUES: Final = re.compile(r"[/,=\[\]]")


class DuplicateCombination(Exception):
    """An include entry made a combination that is already there: two instances of one name."""

    def __init__(self, include_index: int) -> None:
        super().__init__(include_index)
        self.include_index = include_index


def expand(spec: MatrixSpec) -> list[dict[str, str]]:
    """The combinations of `spec`, in GitHub's order: the product, then new include entries."""
    original = list(spec.axes)
    combinations = (
        [
            dict(zip(original, values, strict=True))
            for values in itertools.product(*spec.axes.values())
        ]
        if original
        else []
    )
    combinations = [
        combination
        for combination in combinations
        if not any(_matches(combination, entry) for entry in spec.exclude)
    ]
    extended = len(combinations)  # those past this index were made by include entries
    for index, entry in enumerate(spec.include):
        fitted = False
        for combination in combinations[:extended]:
            if all(combination.get(k) == v for k, v in entry.items() if k in spec.axes):
                combination.update(entry)
                fitted = True
        if not fitted:
            if dict(entry) in combinations:
                raise DuplicateCombination(index)
            combinations.append(dict(entry))
    return combinations


def _matches(combination: Mapping[str, str], entry: Mapping[str, str]) -> bool:
    return all(combination.get(key) == value for key, value in entry.items())


def ordered(combination: Mapping[str, str], spec: MatrixSpec) -> dict[str, str]:
    """The combination's keys in the matrix's order: declared keys, then those `include` adds
    in the order they first appear."""
    order = list(spec.axes)
    for entry in spec.include:
        order.extend(key for key in entry if key not in order)
    return {key: combination[key] for key in order if key in combination}


def read_matrix(reader: NodeReader, entry: Entry, where: str) -> MatrixSpec:
    node = entry.value
    what = f"'matrix' of {where}"
    if not isinstance(node, MappingNode):
        raise reader.fail(
            f"{what} must be a mapping of names to lists of values, such as"
            f' \'{{PY: ["3.11", "3.12"]}}\', not {kind(node)}',
            node,
        )
    axes: dict[str, tuple[str, ...]] = {}
    include: tuple[dict[str, str], ...] = ()
    exclude_entry: Entry | None = None
    for item in reader.entries(node, what):
        if item.key == "include":
            include = _entries_list(reader, item.value, f"'include' of {what}")
        elif item.key == "exclude":
            exclude_entry = item
        else:
            _check_key(reader, item.key, item.key_node, what)
            axes[item.key] = _axis(reader, item, what)
    exclude: tuple[dict[str, str], ...] = ()
    if exclude_entry is not None:
        exclude = _entries_list(reader, exclude_entry.value, f"'exclude' of {what}", list(axes))
    if not axes and not include:
        raise reader.fail(f"{what} is empty: give at least one name with a list of values", node)
    return MatrixSpec(
        axes=axes, include=include, exclude=exclude, location=reader.at(entry.key_node)
    )


def combinations_of(
    reader: NodeReader, spec: MatrixSpec, entry: Entry, where: str
) -> list[dict[str, str]]:
    """The expanded combinations, each in the matrix's key order; an empty or too large
    expansion is an error at the `matrix` key."""
    try:
        combinations = expand(spec)
    except DuplicateCombination as exc:
        include = _include_nodes(entry.value)
        at = include[exc.include_index] if exc.include_index < len(include) else entry.key_node
        raise reader.fail(
            f"this 'include' entry repeats a combination already in the matrix of {where}", at
        ) from None
    if not combinations:
        raise reader.fail(
            f"the matrix of {where} is empty: 'exclude' leaves no combination", entry.key_node
        )
    if len(combinations) > MAX_INSTANCES:
        raise reader.fail(
            f"the matrix of {where} makes {len(combinations)} instances; at most"
            f" {MAX_INSTANCES} are allowed (as in GitHub Actions)",
            entry.key_node,
        )
    return [ordered(combination, spec) for combination in combinations]


def _include_nodes(matrix: Node) -> list[Node]:
    if isinstance(matrix, MappingNode):
        for key, value in matrix.value:
            if key.value == "include" and isinstance(value, SequenceNode):
                return list(value.value)
    return []


def _check_key(reader: NodeReader, key: str, node: Node, what: str) -> None:
    if not ENV_NAME.fullmatch(key):
        raise reader.fail(
            f"invalid matrix name {quoted(key)} in {what}: it becomes an environment variable;"
            " use letters, digits and '_', not starting with a digit",
            node,
        )


def _axis(reader: NodeReader, entry: Entry, what: str) -> tuple[str, ...]:
    node = entry.value
    if not isinstance(node, SequenceNode):
        raise reader.fail(
            f"{quoted(entry.key)} in {what} must be a list of values, not {kind(node)}", node
        )
    if not node.value:
        raise reader.fail(
            f"{quoted(entry.key)} in {what} is empty: an empty matrix makes no instance", node
        )
    values: list[str] = []
    for item in node.value:
        value = _value(reader, item, f"{quoted(entry.key)} in {what}")
        if value in values:
            raise reader.fail(f"{quoted(value)} is listed twice in {quoted(entry.key)}", item)
        values.append(value)
    return tuple(values)


def _entries_list(
    reader: NodeReader, node: Node, what: str, known: Sequence[str] | None = None
) -> tuple[dict[str, str], ...]:
    """`include` or `exclude`: a list of mappings of names to values. For `exclude`, `known`
    are the declared names, the only ones it may name."""
    if not isinstance(node, SequenceNode):
        raise reader.fail(f"{what} must be a list of mappings, not {kind(node)}", node)
    entries: list[dict[str, str]] = []
    for item in node.value:
        if not isinstance(item, MappingNode) or not item.value:
            shown = "an empty mapping" if isinstance(item, MappingNode) else kind(item)
            raise reader.fail(
                f"each item of {what} must be a mapping such as '{{PY: \"3.12\"}}', not {shown}",
                item,
            )
        values: dict[str, str] = {}
        for entry in reader.entries(item, what):
            if known is not None and entry.key not in known:
                hint = did_you_mean(entry.key, known)
                raise reader.fail(
                    f"{what} names {quoted(entry.key)}, which is not a name of the matrix{hint}",
                    entry.key_node,
                )
            _check_key(reader, entry.key, entry.key_node, what)
            values[entry.key] = _value(reader, entry.value, f"{quoted(entry.key)} in {what}")
        entries.append(values)
    return tuple(entries)


def _value(reader: NodeReader, node: Node, what: str) -> str:
    """A scalar as a string, as env values are: a quoted value exactly as written, a number as
    YAML reads it (`3.10` is 3.1, as GitHub Actions shows it), a boolean as true/false."""
    if not isinstance(node, ScalarNode) or node.tag == yaml_nodes.TAG_NULL:
        raise reader.fail(
            f"each value of {what} must be a string, number or boolean, not {kind(node)}", node
        )
    if node.tag == yaml_nodes.TAG_STR:
        text = yaml_nodes.scalar_text(node)
    elif node.tag == yaml_nodes.TAG_BOOL:
        text = "true" if reader.as_bool(node) else "false"
    elif node.tag == yaml_nodes.TAG_INT:
        text = str(reader.as_int(node))
    elif node.tag == yaml_nodes.TAG_FLOAT:
        text = str(reader.as_float(node))
    else:
        raise reader.fail(
            f"each value of {what} must be a string, number or boolean, not {kind(node)}", node
        )
    if _NOT_IN_VALUES.search(text) or not text.isprintable():
        raise reader.fail(
            f"matrix value {quoted(text)} in {what} holds '/', ',', '=', '[', ']' or a control"
            " character: it names the instance and a folder",
            node,
        )
    return text


def expand_steps(
    steps: Mapping[str, Step], matrices: Mapping[str, tuple[MatrixSpec, list[dict[str, str]]]]
) -> dict[str, Step]:
    """`steps` with each matrix step replaced, in place, by its instances, and each need of a
    matrix step replaced by all of its instances."""
    instances = {
        name: [instance_name(name, values) for values in combinations]
        for name, (_, combinations) in matrices.items()
    }
    expanded: dict[str, Step] = {}
    for name, step in steps.items():
        needs = tuple(n for need in step.needs for n in instances.get(need, [need]))
        if name not in matrices:
            expanded[name] = replace(step, needs=needs)
            continue
        spec, combinations = matrices[name]
        for values, instance in zip(combinations, instances[name], strict=True):
            expanded[instance] = replace(
                step,
                name=instance,
                needs=needs,
                env={**step.env, **values},
                matrix=MatrixInstance(step=name, values=values, spec=spec),
            )
    return expanded
