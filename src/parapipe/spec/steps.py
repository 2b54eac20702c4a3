"""`steps`: each step read into `Step`, then their needs checked as a graph (no unknown need,
no cycle)."""

from __future__ import annotations

import graphlib
import re
from typing import Final

from yaml.nodes import MappingNode, Node

from parapipe.errors import SpecError, did_you_mean
from parapipe.model import MatrixSpec, Step
from parapipe.spec import keys as spec_keys
from parapipe.spec.data import read_data
from parapipe.spec.execution import ExecutionOptions, read_execution
from parapipe.spec.handoff import check_handoff_overlaps
from parapipe.spec.keys import STEP_KEYS
from parapipe.spec.matrix import combinations_of, expand_steps, read_matrix
from parapipe.spec.reader import NodeReader
from parapipe.spec.when import read_tags, read_when
from parapipe.spec.yaml_nodes import Entry, is_null, is_string, kind, quoted

# Step names become file names, so they follow GitHub Actions job ids.
STEP_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def read_steps(
    reader: NodeReader, entry: Entry | None, root: Node, defaults: ExecutionOptions
) -> dict[str, Step]:
    if entry is None:
        raise reader.fail("missing 'steps': define at least one step", root)
    node = entry.value
    if is_null(node) or (isinstance(node, MappingNode) and not node.value):
        raise reader.fail("'steps' is empty: define at least one step", node)
    if not isinstance(node, MappingNode):
        raise reader.fail(
            f"'steps' must be a mapping of step names to steps, not {kind(node)}", node
        )
    step_entries = reader.entries(node, "'steps'")
    _check_names(reader, step_entries)
    steps: dict[str, Step] = {}
    need_nodes: dict[str, list[tuple[str, Node]]] = {}
    matrices: dict[str, tuple[MatrixSpec, list[dict[str, str]]]] = {}
    for step_entry in step_entries:
        name = step_entry.key
        steps[name], need_nodes[name] = _step(reader, step_entry, defaults)
        matrix = _matrix(reader, step_entry, steps[name])
        if matrix is not None:
            matrices[name] = matrix
    for name, needs in need_nodes.items():
        _check_needs(reader, name, needs, steps)
    _check_cycles(steps)
    expanded = expand_steps(steps, matrices)
    check_handoff_overlaps(reader, expanded, need_nodes)
    return expanded


def _matrix(
    reader: NodeReader, entry: Entry, step: Step
) -> tuple[MatrixSpec, list[dict[str, str]]] | None:
    """The step's matrix and its combinations, when it has one."""
    assert isinstance(entry.value, MappingNode)
    matrix_entry = next((e for e in reader.entries(entry.value, "") if e.key == "matrix"), None)
    if matrix_entry is None:
        return None
    where = f"step '{step.name}'"
    spec = read_matrix(reader, matrix_entry, where)
    combinations = combinations_of(reader, spec, matrix_entry, where)
    for key in {key: None for values in combinations for key in values}:
        if key in step.env:
            raise reader.fail(
                f"matrix name {quoted(key)} of {where} is also in its 'env': rename one",
                matrix_entry.key_node,
            )
    return spec, combinations


def _check_names(reader: NodeReader, step_entries: list[Entry]) -> None:
    by_lowercase: dict[str, Entry] = {}
    for step_entry in step_entries:
        name = step_entry.key
        if not STEP_NAME.fullmatch(name):
            raise reader.fail(
                f"invalid step name {quoted(name)}: use letters, digits, '_' and '-',"
                " starting with a letter or '_'",
                step_entry.key_node,
            )
        # Step names become file names, which are case-insensitive on macOS and Windows.
        clash = by_lowercase.setdefault(name.lower(), step_entry)
        if clash is not step_entry:
            raise reader.fail(
                f"step '{name}' differs from step '{clash.key}' (line"
                f" {reader.at(clash.key_node).line}) only in case",
                step_entry.key_node,
            )


def _step(
    reader: NodeReader, entry: Entry, defaults: ExecutionOptions
) -> tuple[Step, list[tuple[str, Node]]]:
    name, node = entry.key, entry.value
    where = f"step '{name}'"
    if not isinstance(node, MappingNode):
        hint = " such as '{run: make test}'" if is_string(node) or is_null(node) else ""
        raise reader.fail(f"{where} must be a mapping{hint}, not {kind(node)}", node)
    keys = reader.mapping(node, where, STEP_KEYS, spec_keys.NOT_SUPPORTED_YET["step"])
    if "run" not in keys:
        raise reader.fail(f"{where} has no 'run': the commands it runs", entry.key_node)
    run = reader.commands(keys["run"].value, f"'run' of {where}", required=True)
    needs: list[tuple[str, Node]] = []
    if "needs" in keys:
        what = f"'needs' of {where}"
        seen: set[str] = set()
        for need, item in reader.strings(keys["needs"].value, what):
            if need in seen:
                raise reader.fail(f"{quoted(need)} is listed twice in {what}", item)
            seen.add(need)
            needs.append((need, item))
    env = reader.env(keys["env"].value, f"'env' of {where}") if "env" in keys else {}
    execution = read_execution(reader, keys, where, defaults)
    tags = read_tags(reader, keys["tags"].value, where) if "tags" in keys else ()
    when = read_when(reader, keys["when"].value, where) if "when" in keys else None
    data = read_data(reader, keys, where)
    step = Step(
        name=name,
        run=run,
        needs=tuple(need for need, _ in needs),
        env=env,
        location=reader.at(entry.key_node),
        timeout=execution.timeout,
        retries=execution.retries,
        retry_on=execution.retry_on,
        retry_on_timeout=execution.retry_on_timeout,
        allow_failure=execution.allow_failure,
        tags=tags,
        when_changed=when,
        outputs=data.outputs,
        inputs=data.inputs,
        cache=data.cache,
        caches=data.caches,
        secrets=data.secrets,
    )
    return step, needs


def _check_needs(
    reader: NodeReader, name: str, needs: list[tuple[str, Node]], steps: dict[str, Step]
) -> None:
    for need, item in needs:
        if need == name:
            raise reader.fail(f"step '{name}' needs itself", item)
        if need not in steps:
            hint = did_you_mean(need, (s for s in steps if s != name))
            raise reader.fail(
                f"step '{name}' needs {quoted(need)}, which is not a step{hint}", item
            )


def _check_cycles(steps: dict[str, Step]) -> None:
    try:
        graphlib.TopologicalSorter({name: step.needs for name, step in steps.items()}).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists the cycle in running order; turn it into "a needs b" order, starting
        # from the step written first so the message is the same on every run.
        cycle: list[str] = list(reversed(exc.args[1]))[:-1]
        order = {name: index for index, name in enumerate(steps)}
        first = min(range(len(cycle)), key=lambda i: order[cycle[i]])
        cycle = cycle[first:] + cycle[:first]
        raise SpecError(
            f"dependency cycle: {' -> '.join([*cycle, cycle[0]])}", steps[cycle[0]].location
        ) from None
