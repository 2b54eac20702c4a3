"""Load a pipeline spec (version 1) and validate it into `parapipe.model.Pipeline`.

Every problem is a `SpecError` pointing at FILE:LINE:COL of the node at fault. Relative paths
resolve against the spec file's folder, as docker compose does.
"""

from __future__ import annotations

import contextlib
import difflib
import graphlib
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import pathspec
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from parapipe.errors import SpecError
from parapipe.model import DEFAULT_WORKDIR, DockerfileBuild, ImageSpec, Location, Pipeline, Step
from parapipe.spec import yaml_nodes
from parapipe.spec.data import DATA_KEYS, read_data
from parapipe.spec.execution import EXECUTION_KEYS, ExecutionOptions, read_execution
from parapipe.spec.when import read_tags, read_when
from parapipe.spec.yaml_nodes import Entry, is_null, is_string, kind, quoted

PIPELINE_KEYS: Final = ("name", "defaults", "image", "steps")
IMAGE_KEYS: Final = ("from", "build", "source", "exclude", "workdir", "env", "setup", "host_ca")
BUILD_KEYS: Final = ("context", "dockerfile", "args")
STEP_KEYS: Final = ("run", "needs", "env", "tags", "when", *EXECUTION_KEYS, *DATA_KEYS)

# Keys that later versions of parapipe add. They get their own message instead of "unknown key"
# (and are never silently ignored); the feature that implements one moves it out of here.
NOT_SUPPORTED_YET: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "pipeline": frozenset(),
        "defaults": frozenset(),
        "image": frozenset(),
        "build": frozenset(),
        "step": frozenset(),
    }
)

# Step names become file names, so they follow GitHub Actions job ids.
STEP_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The grammar of github.com/distribution/reference, which Docker and Podman both parse with.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE: Final = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?",
    re.ASCII,
)


def load_pipeline(path: Path) -> Pipeline:
    """Read, parse and validate the spec at `path`; raise `SpecError` for any problem in it."""
    file = _shown(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SpecError(f"{file}: no such spec file") from exc
    except IsADirectoryError as exc:
        raise SpecError(f"{file}: is a folder, not a spec file") from exc
    except OSError as exc:
        raise SpecError(f"{file}: cannot read spec file ({exc.strerror or exc})") from exc
    spec_path = Path(os.path.abspath(path))
    return _SpecReader(file, spec_path).read(_decode(data, file))


def _shown(path: Path) -> str:
    """The path as the user gave it, made relative when it lies under the current folder."""
    shown = str(path)
    if path.is_absolute():
        with contextlib.suppress(ValueError, OSError):  # elsewhere, or the cwd is gone
            shown = str(path.relative_to(Path.cwd()))
    # Messages are one line: a name holding a line break is shown escaped.
    return shown if shown.isprintable() else repr(shown)[1:-1]


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


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


class _SpecReader:
    """Validates one spec's nodes; every method raises `SpecError` at the node at fault."""

    def __init__(self, file: str, spec_path: Path) -> None:
        self.file = file
        self.spec_path = spec_path
        self.spec_dir = spec_path.parent
        self.defaults = ExecutionOptions()

    def at(self, node: Node) -> Location:
        return yaml_nodes.location(node, self.file)

    def fail(self, message: str, node: Node) -> SpecError:
        return SpecError(message, self.at(node))

    def read(self, text: str) -> Pipeline:
        root = yaml_nodes.parse(text, self.file)
        if root is None or is_null(root):
            raise SpecError(
                "the spec is empty; it needs 'image' and 'steps'",
                Location(file=self.file, line=1, column=1),
            )
        if not isinstance(root, MappingNode):
            raise self.fail(
                f"the spec must be a mapping with 'image' and 'steps', not {kind(root)}", root
            )
        top = self.mapping(root, "the spec", "pipeline", PIPELINE_KEYS)
        project_root = find_project_root(self.spec_dir)
        if "defaults" in top:
            self.defaults = self.execution_defaults(top["defaults"].value)
        return Pipeline(
            name=self.name(top.get("name")),
            spec_path=self.spec_path,
            project_root=project_root,
            image=self.image(top.get("image"), root, project_root),
            steps=self.steps(top.get("steps"), root),
        )

    # -- generic readers ----------------------------------------------------------------------

    def mapping(
        self, node: MappingNode, where: str, section: str, known: tuple[str, ...]
    ) -> dict[str, Entry]:
        """The mapping's entries by key, after rejecting unknown and not-yet-supported keys."""
        result: dict[str, Entry] = {}
        not_yet = NOT_SUPPORTED_YET[section]
        for entry in yaml_nodes.entries(node, self.file, where):
            if entry.key in not_yet:
                raise self.fail(
                    f"{quoted(entry.key)} is not supported yet by this version of parapipe",
                    entry.key_node,
                )
            if entry.key not in known:
                hint = _did_you_mean(entry.key, known)
                raise self.fail(f"unknown key {quoted(entry.key)} in {where}{hint}", entry.key_node)
            result[entry.key] = entry
        return result

    def string(self, node: Node, what: str) -> str:
        if not is_string(node):
            raise self.fail(f"{what} must be a string, not {kind(node)}", node)
        return yaml_nodes.scalar_text(node)

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

    def commands(self, node: Node, what: str, *, required: bool) -> tuple[str, ...]:
        commands = self.strings(node, what)
        if required and not commands:
            raise self.fail(f"{what} must not be empty", node)
        for command, item in commands:
            if not command.strip():
                raise self.fail(f"{what} has an empty command", item)
        return tuple(command for command, _ in commands)

    def env(self, node: Node, what: str) -> dict[str, str]:
        if not isinstance(node, MappingNode):
            raise self.fail(f"{what} must be a mapping of names to values, not {kind(node)}", node)
        env: dict[str, str] = {}
        for entry in yaml_nodes.entries(node, self.file, what):
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
                return "true" if yaml_nodes.as_bool(value, self.file) else "false"
            if value.tag == yaml_nodes.TAG_INT:
                return str(yaml_nodes.as_int(value, self.file))
            if value.tag == yaml_nodes.TAG_FLOAT:
                return str(yaml_nodes.as_float(value, self.file))
            if value.tag == yaml_nodes.TAG_NULL:
                raise self.fail(
                    f'{quoted(entry.key)} in {what} has no value; write "" for an empty string',
                    value,
                )
        raise self.fail(
            f"{quoted(entry.key)} in {what} must be a string, number or boolean, not {kind(value)}",
            value,
        )

    def folder(self, node: Node, what: str, base: Path) -> Path:
        folder = _absolute(base, self.string(node, what))
        if not folder.is_dir():
            raise self.fail(f"{what} is not a folder: {_shown(folder)}", node)
        return folder

    # -- the spec's parts -----------------------------------------------------------------------

    def name(self, entry: Entry | None) -> str:
        if entry is None:
            return self.spec_path.stem
        name = self.string(entry.value, "'name'")
        if not name.strip() or "\n" in name or "\r" in name:
            raise self.fail("'name' must be one non-empty line", entry.value)
        return name

    def image(self, entry: Entry | None, root: Node, project_root: Path) -> ImageSpec:
        if entry is None:
            raise self.fail(
                "missing 'image': the image every step runs in ('from' an image or 'build')", root
            )
        node = entry.value
        if not isinstance(node, MappingNode):
            hint = ""
            if is_string(node) and yaml_nodes.scalar_text(node).isprintable():
                hint = f" (did you mean 'image: {{from: {yaml_nodes.scalar_text(node)}}}'?)"
            raise self.fail(f"'image' must be a mapping, not {kind(node)}{hint}", node)
        keys = self.mapping(node, "'image'", "image", IMAGE_KEYS)
        if ("from" in keys) == ("build" in keys):
            problem = "not both" if "from" in keys else "found neither"
            raise self.fail(
                f"'image' needs exactly one of 'from' (a base image) and 'build' (a Dockerfile),"
                f" {problem}",
                entry.key_node,
            )
        origin: str | DockerfileBuild
        if "from" in keys:
            origin = self.image_reference(keys["from"].value)
        else:
            origin = self.build(keys["build"])

        if "source" in keys:
            source = self.folder(keys["source"].value, "'image.source'", self.spec_dir)
        else:
            source = project_root
        workdir = self.workdir(keys["workdir"].value) if "workdir" in keys else DEFAULT_WORKDIR
        host_ca = True
        if "host_ca" in keys:
            value = keys["host_ca"].value
            if not isinstance(value, ScalarNode) or value.tag != yaml_nodes.TAG_BOOL:
                raise self.fail(f"'image.host_ca' must be a boolean, not {kind(value)}", value)
            host_ca = yaml_nodes.as_bool(value, self.file)
        return ImageSpec(
            origin=origin,
            source=source,
            exclude=self.exclude(keys["exclude"].value) if "exclude" in keys else (),
            workdir=workdir,
            env=self.env(keys["env"].value, "'image.env'") if "env" in keys else {},
            setup=(
                self.commands(keys["setup"].value, "'image.setup'", required=False)
                if "setup" in keys
                else ()
            ),
            host_ca=host_ca,
            location=self.at(entry.key_node),
        )

    def image_reference(self, node: Node) -> str:
        reference = self.string(node, "'image.from'")
        if not IMAGE_REFERENCE.fullmatch(reference):
            raise self.fail(
                f"'image.from' must be an image reference such as 'debian:bookworm-slim'"
                f" (lowercase name, optional :tag or @digest), not {quoted(reference)}",
                node,
            )
        return reference

    def build(self, entry: Entry) -> DockerfileBuild:
        node = entry.value
        if is_string(node):  # `build: ./folder`, as in docker compose
            keys: dict[str, Entry] = {"context": Entry("context", entry.key_node, node)}
        elif isinstance(node, MappingNode):
            keys = self.mapping(node, "'image.build'", "build", BUILD_KEYS)
        else:
            raise self.fail(
                f"'image.build' must be a mapping (or a context folder), not {kind(node)}", node
            )

        args = self.env(keys["args"].value, "'image.build.args'") if "args" in keys else {}
        if "context" in keys:
            context = self.folder(keys["context"].value, "'image.build.context'", self.spec_dir)
        else:
            context = self.spec_dir

        if "dockerfile" in keys:
            value = keys["dockerfile"].value
            dockerfile = _absolute(context, self.string(value, "'image.build.dockerfile'"))
            if not dockerfile.is_file():
                raise self.fail(
                    f"'image.build.dockerfile' is not a file: {_shown(dockerfile)}", value
                )
        else:
            dockerfile = context / "Dockerfile"
            if not dockerfile.is_file():
                raise self.fail(
                    f"no Dockerfile in the build context: {_shown(dockerfile)}"
                    " (set 'image.build.dockerfile')",
                    entry.key_node,
                )
        return DockerfileBuild(context=context, dockerfile=dockerfile, args=args)

    def workdir(self, node: Node) -> str:
        workdir = self.string(node, "'image.workdir'")
        if not workdir.startswith("/") or "\\" in workdir or "\0" in workdir:
            raise self.fail(
                "'image.workdir' must be an absolute POSIX path such as '/src',"
                f" not {quoted(workdir)}",
                node,
            )
        normalized = posixpath.normpath(workdir)
        if normalized in ("/", "//"):
            raise self.fail(
                "'image.workdir' must not be '/': the project's files are copied into it", node
            )
        return normalized

    def exclude(self, node: Node) -> tuple[str, ...]:
        what = "'image.exclude'"
        if not isinstance(node, SequenceNode):
            raise self.fail(f"{what} must be a list of gitignore patterns, not {kind(node)}", node)
        patterns: list[str] = []
        for item in node.value:
            pattern = self.list_item(item, what)
            try:
                compiled = pathspec.GitIgnoreSpec.from_lines([pattern]).patterns
            except (ValueError, re.error) as exc:
                raise self.fail(
                    f"invalid gitignore pattern {quoted(pattern)} in {what}", item
                ) from exc
            if all(p.include is None for p in compiled):
                raise self.fail(
                    f"pattern {quoted(pattern)} in {what} matches nothing"
                    " (blank, or a '#' comment)",
                    item,
                )
            patterns.append(pattern)
        return tuple(patterns)

    def steps(self, entry: Entry | None, root: Node) -> dict[str, Step]:
        if entry is None:
            raise self.fail("missing 'steps': define at least one step", root)
        node = entry.value
        if is_null(node) or (isinstance(node, MappingNode) and not node.value):
            raise self.fail("'steps' is empty: define at least one step", node)
        if not isinstance(node, MappingNode):
            raise self.fail(
                f"'steps' must be a mapping of step names to steps, not {kind(node)}", node
            )
        step_entries = yaml_nodes.entries(node, self.file, "'steps'")
        by_lowercase: dict[str, Entry] = {}
        for step_entry in step_entries:
            name = step_entry.key
            if not STEP_NAME.fullmatch(name):
                raise self.fail(
                    f"invalid step name {quoted(name)}: use letters, digits, '_' and '-',"
                    " starting with a letter or '_'",
                    step_entry.key_node,
                )
            # Step names become file names, which are case-insensitive on macOS and Windows.
            clash = by_lowercase.setdefault(name.lower(), step_entry)
            if clash is not step_entry:
                raise self.fail(
                    f"step '{name}' differs from step '{clash.key}' (line"
                    f" {self.at(clash.key_node).line}) only in case",
                    step_entry.key_node,
                )

        steps: dict[str, Step] = {}
        need_nodes: dict[str, list[tuple[str, Node]]] = {}
        for step_entry in step_entries:
            steps[step_entry.key], need_nodes[step_entry.key] = self.step(step_entry)
        for name, needs in need_nodes.items():
            self.check_needs(name, needs, steps)
        self.check_cycles(steps)
        return steps

    def step(self, entry: Entry) -> tuple[Step, list[tuple[str, Node]]]:
        name, node = entry.key, entry.value
        where = f"step '{name}'"
        if not isinstance(node, MappingNode):
            hint = " such as '{run: make test}'" if is_string(node) or is_null(node) else ""
            raise self.fail(f"{where} must be a mapping{hint}, not {kind(node)}", node)
        keys = self.mapping(node, where, "step", STEP_KEYS)
        if "run" not in keys:
            raise self.fail(f"{where} has no 'run': the commands it runs", entry.key_node)
        run = self.commands(keys["run"].value, f"'run' of {where}", required=True)
        needs: list[tuple[str, Node]] = []
        if "needs" in keys:
            what = f"'needs' of {where}"
            seen: set[str] = set()
            for need, item in self.strings(keys["needs"].value, what):
                if need in seen:
                    raise self.fail(f"{quoted(need)} is listed twice in {what}", item)
                seen.add(need)
                needs.append((need, item))
        env = self.env(keys["env"].value, f"'env' of {where}") if "env" in keys else {}
        execution = read_execution(keys, where, self.file, self.defaults)
        tags = read_tags(keys["tags"].value, where, self.file) if "tags" in keys else ()
        when = read_when(keys["when"].value, where, self.file) if "when" in keys else None
        data = read_data(keys, where, self.file)
        step = Step(
            name=name,
            run=run,
            needs=tuple(need for need, _ in needs),
            env=env,
            location=self.at(entry.key_node),
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

    def execution_defaults(self, node: Node) -> ExecutionOptions:
        """`defaults`: the execution options every step has unless it sets its own."""
        if not isinstance(node, MappingNode):
            raise self.fail(f"'defaults' must be a mapping, not {kind(node)}", node)
        keys = self.mapping(node, "'defaults'", "defaults", EXECUTION_KEYS)
        return read_execution(keys, "'defaults'", self.file, ExecutionOptions())

    def check_needs(self, name: str, needs: list[tuple[str, Node]], steps: dict[str, Step]) -> None:
        for need, item in needs:
            if need == name:
                raise self.fail(f"step '{name}' needs itself", item)
            if need not in steps:
                hint = _did_you_mean(need, (s for s in steps if s != name))
                raise self.fail(
                    f"step '{name}' needs {quoted(need)}, which is not a step{hint}", item
                )

    def check_cycles(self, steps: dict[str, Step]) -> None:
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


def _absolute(base: Path, path: str) -> Path:
    """`path` resolved against `base` and normalised, without following symlinks (as compose)."""
    return Path(os.path.normpath(base / path))
