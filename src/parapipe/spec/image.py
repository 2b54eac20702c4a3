"""`image`: the one image every step runs in, read into `ImageSpec`.

Everything that would otherwise fail only once the image is planned or built is checked here
too, so a bad spec exits 2 before any engine is contacted.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Final

import pathspec
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from parapipe.errors import SpecError
from parapipe.model import DEFAULT_WORKDIR, DockerfileBuild, ImageSpec, PrepareSpec
from parapipe.spec import keys as spec_keys
from parapipe.spec import yaml_nodes
from parapipe.spec.data import read_caches
from parapipe.spec.keys import BUILD_KEYS, IMAGE_KEYS, PREPARE_KEYS
from parapipe.spec.reader import NodeReader, absolute, shown
from parapipe.spec.when import read_globs
from parapipe.spec.yaml_nodes import Entry, is_string, kind, quoted

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

DEFAULT_KEPT_IMAGES: Final = 3
MAX_KEPT_IMAGES: Final = 1000

# Dockerfile `ENV` and `WORKDIR` are single-line instructions: a line break cannot be quoted.
_LINE_BREAKS: Final = re.compile(r"[\r\n]")


def read_image(
    reader: NodeReader, entry: Entry | None, root: Node, *, spec_dir: Path, project_root: Path
) -> ImageSpec:
    if entry is None:
        raise reader.fail(
            "missing 'image': the image every step runs in ('from' an image or 'build')", root
        )
    node = entry.value
    if not isinstance(node, MappingNode):
        hint = ""
        if is_string(node) and yaml_nodes.scalar_text(node).isprintable():
            hint = f" (did you mean 'image: {{from: {yaml_nodes.scalar_text(node)}}}'?)"
        raise reader.fail(f"'image' must be a mapping, not {kind(node)}{hint}", node)
    keys = reader.mapping(node, "'image'", IMAGE_KEYS, spec_keys.NOT_SUPPORTED_YET["image"])
    if ("from" in keys) == ("build" in keys):
        problem = "not both" if "from" in keys else "found neither"
        raise reader.fail(
            f"'image' needs exactly one of 'from' (a base image) and 'build' (a Dockerfile),"
            f" {problem}",
            entry.key_node,
        )
    origin: str | DockerfileBuild
    if "from" in keys:
        origin = _reference(reader, keys["from"].value)
    else:
        origin = _build(reader, keys["build"], spec_dir)

    if "source" in keys:
        source = reader.folder(keys["source"].value, "'image.source'", spec_dir)
    else:
        source = project_root
    workdir = _workdir(reader, keys["workdir"].value) if "workdir" in keys else DEFAULT_WORKDIR
    host_ca = True
    if "host_ca" in keys:
        value = keys["host_ca"].value
        if not isinstance(value, ScalarNode) or value.tag != yaml_nodes.TAG_BOOL:
            raise reader.fail(f"'image.host_ca' must be a boolean, not {kind(value)}", value)
        host_ca = reader.as_bool(value)
    image = ImageSpec(
        origin=origin,
        source=source,
        exclude=_exclude(reader, keys["exclude"].value) if "exclude" in keys else (),
        workdir=workdir,
        env=reader.env(keys["env"].value, "'image.env'") if "env" in keys else {},
        setup=(
            reader.commands(keys["setup"].value, "'image.setup'", required=False)
            if "setup" in keys
            else ()
        ),
        host_ca=host_ca,
        location=reader.at(entry.key_node),
        prepare=_prepare(reader, keys["prepare"]) if "prepare" in keys else None,
        caches=read_caches(reader, keys["caches"].value, "'image'") if "caches" in keys else {},
        keep=_keep(reader, keys["keep"].value) if "keep" in keys else DEFAULT_KEPT_IMAGES,
    )
    _check_buildable(image)
    return image


def _prepare(reader: NodeReader, entry: Entry) -> PrepareSpec:
    """`image.prepare`: `files` (globs under the source) and `run`, both required."""
    node = entry.value
    if not isinstance(node, MappingNode):
        raise reader.fail(
            f"'image.prepare' must be a mapping with 'files' and 'run', not {kind(node)}", node
        )
    keys = reader.mapping(
        node, "'image.prepare'", PREPARE_KEYS, spec_keys.NOT_SUPPORTED_YET["prepare"]
    )
    for required, meaning in (
        ("run", "the commands that install the dependencies"),
        ("files", "globs of the dependency files, such as [pyproject.toml]"),
    ):
        if required not in keys:
            raise reader.fail(f"'image.prepare' needs '{required}': {meaning}", entry.key_node)
    files_node = keys["files"].value
    globs = read_globs(reader, files_node, "'image.prepare.files'")
    if not globs:
        raise reader.fail("'image.prepare.files' must not be empty", files_node)
    items = files_node.value if isinstance(files_node, SequenceNode) else [files_node]
    return PrepareSpec(
        files=globs,
        run=reader.commands(keys["run"].value, "'image.prepare.run'", required=True),
        env=reader.env(keys["env"].value, "'image.prepare.env'") if "env" in keys else {},
        file_locations=tuple(reader.at(item) for item in items),
    )


def _check_buildable(image: ImageSpec) -> None:
    """What the image's Dockerfile and file copy need, at the `image` key."""
    if not image.source.is_dir():
        raise SpecError(f"the image source folder {image.source} does not exist", image.location)
    if _LINE_BREAKS.search(image.workdir):
        raise SpecError("'image.workdir' cannot contain a line break", image.location)
    for name, value in image.env.items():
        if _LINE_BREAKS.search(value):
            raise SpecError(
                f"'image.env' {name}: a value baked into the image cannot contain a line break;"
                " set it in the steps' env instead",
                image.location,
            )


def _reference(reader: NodeReader, node: Node) -> str:
    reference = reader.string(node, "'image.from'")
    if not IMAGE_REFERENCE.fullmatch(reference):
        raise reader.fail(
            f"'image.from' must be an image reference such as 'debian:bookworm-slim'"
            f" (lowercase name, optional :tag or @digest), not {quoted(reference)}",
            node,
        )
    return reference


def _build(reader: NodeReader, entry: Entry, spec_dir: Path) -> DockerfileBuild:
    node = entry.value
    if is_string(node):  # `build: ./folder`, as in docker compose
        keys: dict[str, Entry] = {"context": Entry("context", entry.key_node, node)}
    elif isinstance(node, MappingNode):
        keys = reader.mapping(
            node, "'image.build'", BUILD_KEYS, spec_keys.NOT_SUPPORTED_YET["build"]
        )
    else:
        raise reader.fail(
            f"'image.build' must be a mapping (or a context folder), not {kind(node)}", node
        )

    args = reader.env(keys["args"].value, "'image.build.args'") if "args" in keys else {}
    if "context" in keys:
        context = reader.folder(keys["context"].value, "'image.build.context'", spec_dir)
    else:
        context = spec_dir

    if "dockerfile" in keys:
        value = keys["dockerfile"].value
        dockerfile = absolute(context, reader.string(value, "'image.build.dockerfile'"))
        if not dockerfile.is_file():
            raise reader.fail(f"'image.build.dockerfile' is not a file: {shown(dockerfile)}", value)
    else:
        dockerfile = context / "Dockerfile"
        if not dockerfile.is_file():
            raise reader.fail(
                f"no Dockerfile in the build context: {shown(dockerfile)}"
                " (set 'image.build.dockerfile')",
                entry.key_node,
            )
    return DockerfileBuild(context=context, dockerfile=dockerfile, args=args)


def _workdir(reader: NodeReader, node: Node) -> str:
    workdir = reader.string(node, "'image.workdir'")
    if not workdir.startswith("/") or "\\" in workdir or "\0" in workdir:
        raise reader.fail(
            f"'image.workdir' must be an absolute POSIX path such as '/src', not {quoted(workdir)}",
            node,
        )
    normalized = posixpath.normpath(workdir)
    if normalized in ("/", "//"):
        raise reader.fail(
            "'image.workdir' must not be '/': the project's files are copied into it", node
        )
    return normalized


def _exclude(reader: NodeReader, node: Node) -> tuple[str, ...]:
    what = "'image.exclude'"
    if not isinstance(node, SequenceNode):
        raise reader.fail(f"{what} must be a list of gitignore patterns, not {kind(node)}", node)
    patterns: list[str] = []
    for item in node.value:
        pattern = reader.list_item(item, what)
        try:
            compiled = pathspec.GitIgnoreSpec.from_lines([pattern]).patterns
        except (ValueError, re.error) as exc:
            raise reader.fail(
                f"invalid gitignore pattern {quoted(pattern)} in {what}", item
            ) from exc
        if all(p.include is None for p in compiled):
            raise reader.fail(
                f"pattern {quoted(pattern)} in {what} matches nothing (blank, or a '#' comment)",
                item,
            )
        patterns.append(pattern)
    return tuple(patterns)


def _keep(reader: NodeReader, node: Node) -> int:
    """`image.keep`: how many of the pipeline's images stay after a build. The one the run uses
    is always among them, so it is at least 1."""
    if not isinstance(node, ScalarNode) or node.tag != yaml_nodes.TAG_INT:
        raise reader.fail(f"'image.keep' must be a whole number, not {kind(node)}", node)
    count = reader.as_int(node)
    if not 1 <= count <= MAX_KEPT_IMAGES:
        raise reader.fail(
            f"'image.keep' must be between 1 and {MAX_KEPT_IMAGES}, not {count}", node
        )
    return count
