"""Load a pipeline spec (version 1) and validate it into `parapipe.model.Pipeline`.

Every problem is a `SpecError` pointing at FILE:LINE:COL of the node at fault. Relative paths
resolve against the spec file's folder, as docker compose does. The parts are read by
`spec.image` and `spec.steps` (with `execution`, `data` and `when`), all through one
`NodeReader` that carries the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from yaml.nodes import MappingNode, Node

from parapipe.errors import Location, SpecError
from parapipe.model import Pipeline
from parapipe.spec import keys as spec_keys
from parapipe.spec import yaml_nodes
from parapipe.spec.execution import EXECUTION_KEYS, ExecutionOptions, read_execution
from parapipe.spec.image import read_image
from parapipe.spec.keys import NOT_SUPPORTED_YET, PIPELINE_KEYS
from parapipe.spec.reader import NodeReader, shown
from parapipe.spec.services import read_services, with_step_services
from parapipe.spec.steps import read_steps
from parapipe.spec.yaml_nodes import Entry, is_null, kind

__all__ = ["NOT_SUPPORTED_YET", "find_project_root", "load_pipeline"]


def load_pipeline(path: Path) -> Pipeline:
    """Read, parse and validate the spec at `path`; raise `SpecError` for any problem in it."""
    file = shown(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SpecError(f"{file}: no such spec file") from exc
    except IsADirectoryError as exc:
        raise SpecError(f"{file}: is a folder, not a spec file") from exc
    except OSError as exc:
        raise SpecError(f"{file}: cannot read spec file ({exc.strerror or exc})") from exc
    spec_path = Path(os.path.abspath(path))
    return _read(NodeReader(file), _decode(data, file), spec_path)


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        before = data[line_start : exc.start].decode("utf-8-sig", errors="replace")
        location = Location(
            file=file, line=data.count(b"\n", 0, exc.start) + 1, column=len(before) + 1
        )
        raise SpecError("the spec is not UTF-8 text", location) from exc


def find_project_root(folder: Path) -> Path:
    """The root of the git repository holding `folder`, else `folder` itself.

    Looks for a `.git` entry (a folder, or a file in worktrees and submodules) instead of asking
    git: spawning it would cost more than loading the whole spec.
    """
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate / ".git"):
            return candidate
    return folder


def _read(reader: NodeReader, text: str, spec_path: Path) -> Pipeline:
    root = yaml_nodes.parse(text, reader.file)
    if root is None or is_null(root):
        raise SpecError(
            "the spec is empty; it needs 'image' and 'steps'",
            Location(file=reader.file, line=1, column=1),
        )
    if not isinstance(root, MappingNode):
        raise reader.fail(
            f"the spec must be a mapping with 'image' and 'steps', not {kind(root)}", root
        )
    top = reader.mapping(root, "the spec", PIPELINE_KEYS, spec_keys.NOT_SUPPORTED_YET["pipeline"])
    spec_dir = spec_path.parent
    project_root = find_project_root(spec_dir)
    defaults = ExecutionOptions()
    if "defaults" in top:
        defaults = _execution_defaults(reader, top["defaults"].value)
    name = _name(reader, top.get("name"), spec_path)
    image = read_image(reader, top.get("image"), root, spec_dir=spec_dir, project_root=project_root)
    services = read_services(reader, top.get("services"))
    steps = read_steps(reader, top.get("steps"), root, defaults)
    return Pipeline(
        name=name,
        spec_path=spec_path,
        project_root=project_root,
        image=image,
        steps=with_step_services(reader, top.get("steps"), steps, services),
        services=services,
    )


def _name(reader: NodeReader, entry: Entry | None, spec_path: Path) -> str:
    if entry is None:
        return spec_path.stem
    name = reader.string(entry.value, "'name'")
    if not name.strip() or "\n" in name or "\r" in name:
        raise reader.fail("'name' must be one non-empty line", entry.value)
    return name


def _execution_defaults(reader: NodeReader, node: Node) -> ExecutionOptions:
    """`defaults`: the execution options every step has unless it sets its own."""
    if not isinstance(node, MappingNode):
        raise reader.fail(f"'defaults' must be a mapping, not {kind(node)}", node)
    keys = reader.mapping(
        node, "'defaults'", EXECUTION_KEYS, spec_keys.NOT_SUPPORTED_YET["defaults"]
    )
    return read_execution(reader, keys, "'defaults'", ExecutionOptions())
