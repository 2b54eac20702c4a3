"""The step graph: which steps a run needs, in what order, and how to draw it."""

from __future__ import annotations

import graphlib
import statistics
from collections.abc import Iterable, Mapping, Sequence

from parapipe.errors import UsageError, did_you_mean
from parapipe.model import Pipeline, Step, split_instance


def needs_of(steps: Mapping[str, Step]) -> dict[str, tuple[str, ...]]:
    return {name: step.needs for name, step in steps.items()}


def select_steps(
    pipeline: Pipeline, wanted: Sequence[str], *, with_needs: bool = True
) -> list[str]:
    """The steps named on the command line plus everything they transitively need, in a
    topological order (all steps when none are named). `with_needs=False` (`--no-deps`) takes
    only the named steps."""
    wanted = resolve_names(pipeline, wanted)
    if not wanted:
        chosen = set(pipeline.steps)
    elif with_needs:
        chosen = _with_needs(pipeline.steps, wanted)
    else:
        chosen = set(wanted)
    return [name for name in topological_order(pipeline.steps) if name in chosen]


def resolve_names(pipeline: Pipeline, wanted: Sequence[str]) -> list[str]:
    """The steps `wanted` names: a step, a matrix step (all its instances) or one instance,
    whose values may be given in any order (`test[PY=3.12,SHARD=1]`). An unknown name is a
    `UsageError` with "did you mean"."""
    instances: dict[str, list[str]] = {}
    for name, step in pipeline.steps.items():
        if step.matrix is not None:
            instances.setdefault(step.matrix.step, []).append(name)
    resolved: list[str] = []
    for name in wanted:
        if name in pipeline.steps:
            resolved.append(name)
        elif name in instances:
            resolved.extend(instances[name])
        else:
            resolved.append(_instance(pipeline, name, instances))
    return list(dict.fromkeys(resolved))


def _instance(pipeline: Pipeline, name: str, instances: Mapping[str, list[str]]) -> str:
    base, bracket, rest = name.partition("[")
    if bracket and rest.endswith("]") and base in instances:
        pairs = [pair.partition("=") for pair in rest[:-1].split(",")]
        values = {key.strip(): value.strip() for key, _, value in pairs}
        for instance in instances[base]:
            matrix = pipeline.steps[instance].matrix
            # A value left empty matches a key the instance lacks: a `--split` job names its
            # instance with every key of the matrix, `${{ matrix.KEY }}` empty where it has none.
            if matrix is not None and all(
                matrix.values.get(key, "") == values.get(key, "")
                for key in {*matrix.values, *values}
            ):
                return instance
        hint = did_you_mean(name, instances[base])
        raise UsageError(f"{pipeline.spec_path.name}: step '{base}' has no instance '{name}'{hint}")
    hint = did_you_mean(
        name, [*instances, *(n for n in pipeline.steps if n.partition("[")[0] not in instances)]
    )
    raise UsageError(f"{pipeline.spec_path.name}: no step named '{name}'{hint}")


def needs_within(pipeline: Pipeline, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each selected step's needs among the selected steps: a need left out of the selection
    (`--no-deps`) counts as satisfied."""
    chosen = set(names)
    return {name: tuple(n for n in pipeline.steps[name].needs if n in chosen) for name in names}


def _with_needs(steps: Mapping[str, Step], wanted: Iterable[str]) -> set[str]:
    chosen: set[str] = set()
    pending = list(wanted)
    while pending:
        name = pending.pop()
        if name not in chosen:
            chosen.add(name)
            pending.extend(steps[name].needs)
    return chosen


def topological_order(steps: Mapping[str, Step]) -> list[str]:
    """Needs before dependents; the spec loader has already rejected cycles."""
    return list(graphlib.TopologicalSorter(needs_of(steps)).static_order())


def remaining_path_lengths(
    needs: Mapping[str, tuple[str, ...]], durations: Mapping[str, float]
) -> dict[str, float]:
    """For each step: its own expected duration plus the longest chain of dependents after it,
    i.e. how long the run takes at best once the step starts. Steps with no known duration
    count as the median of the known ones (1 s when none is known)."""
    known = [durations[name] for name in needs if name in durations]
    typical = statistics.median(known) if known else 1.0
    dependents: dict[str, list[str]] = {name: [] for name in needs}
    for name, deps in needs.items():
        for dep in deps:
            dependents[dep].append(name)
    lengths: dict[str, float] = {}
    for name in reversed(list(graphlib.TopologicalSorter(needs).static_order())):
        after = max((lengths[d] for d in dependents[name]), default=0.0)
        lengths[name] = durations.get(name, typical) + after
    return lengths


def render(pipeline: Pipeline, names: Sequence[str], fmt: str) -> str:
    needs = {name: pipeline.steps[name].needs for name in grouped(names)}
    if fmt == "mermaid":
        return "\n".join(mermaid_lines(needs)) + "\n"
    if fmt == "dot":
        return _dot(pipeline.name, needs)
    return _text(pipeline.name, needs)


def grouped(names: Sequence[str]) -> list[str]:
    """`names` in their order, except that a matrix step's instances come together, where its
    first one is."""
    groups: dict[str, list[str]] = {}
    for name in names:
        instance = split_instance(name)
        groups.setdefault(name if instance is None else instance[0] + "[", []).append(name)
    return [name for members in groups.values() for name in members]


def _text(title: str, needs: Mapping[str, tuple[str, ...]]) -> str:
    """One line per step with its needs; a matrix step's instances indented under it, a need
    of all of a matrix step's instances read as that step."""
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, deps in needs.items():
        instance = split_instance(name)
        if instance is not None:
            base = instance[0]
            if base not in seen:
                seen.add(base)
                rows.append((base, _needs_text(deps, needs)))
            rows.append((f"  [{instance[1]}]", ""))
        else:
            rows.append((name, _needs_text(deps, needs)))
    width = max((len(label) for label, _ in rows), default=0)
    lines = [f"{title}: {len(needs)} step{'s' if len(needs) != 1 else ''}"]
    lines += [f"  {label:<{width}}{after}".rstrip() for label, after in rows]
    return "\n".join(lines) + "\n"


def _needs_text(deps: Sequence[str], needs: Mapping[str, Sequence[str]]) -> str:
    if not deps:
        return ""
    shown: list[str] = []
    for dep in deps:
        instance = split_instance(dep)
        every = instance is not None and all(
            d in deps for d in needs if (split_instance(d) or ("",))[0] == instance[0]
        )
        shown.append(instance[0] if instance is not None and every else dep)
    return f"  needs {', '.join(dict.fromkeys(shown))}"


def mermaid_lines(
    needs: Mapping[str, Sequence[str]],
    *,
    labels: Mapping[str, str] | None = None,
    classes: Mapping[str, str] | None = None,
) -> list[str]:
    """A Mermaid flowchart of the steps in `needs` (in its order), one line each: `labels`
    replaces a step's name as its text, `classes` names its `classDef`. A need outside `needs`
    draws no edge. `parapipe graph` and the GitHub job summary both draw with it."""
    # Mermaid ids cannot hold every character a step name may ('-' reads as an edge), so each
    # step gets a plain id and its name as the label.
    ids = {name: f"s{index}" for index, name in enumerate(needs)}
    lines = ["flowchart LR"]
    groups: dict[str, list[str]] = {}  # a matrix step's instances go in a subgraph of it
    for name in needs:
        instance = split_instance(name)
        groups.setdefault(name if instance is None else instance[0] + "[", []).append(name)
    for index, (key, members) in enumerate(groups.items()):
        grouped = key.endswith("[")
        if grouped:
            lines.append(f'    subgraph m{index}["{key[:-1]}"]')
        for name in members:
            label = (labels or {}).get(name, name).replace('"', "#quot;")
            tone = (classes or {}).get(name)
            indent = "        " if grouped else "    "
            lines.append(f'{indent}{ids[name]}["{label}"]' + (f":::{tone}" if tone else ""))
        if grouped:
            lines.append("    end")
    for name, deps in needs.items():
        lines.extend(f"    {ids[dep]} --> {ids[name]}" for dep in deps if dep in ids)
    return lines


def _dot(title: str, needs: Mapping[str, tuple[str, ...]]) -> str:
    lines = [f'digraph "{title}" {{', "    rankdir=LR;"]
    clusters: dict[str, list[str]] = {}
    for name, deps in needs.items():
        instance = split_instance(name)
        if instance is None:
            lines.append(f'    "{name}";')
        else:  # a matrix step's instances in a cluster of it
            clusters.setdefault(instance[0], []).append(name)
        lines.extend(f'    "{dep}" -> "{name}";' for dep in deps)
    for index, (base, members) in enumerate(clusters.items()):
        lines.append(f'    subgraph "cluster_{index}" {{ label="{base}";')
        lines.extend(f'        "{name}";' for name in members)
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"
