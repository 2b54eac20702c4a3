"""The Dagger engine without an engine: the container chains it builds, and what it does with the
answers, through the real SDK query builder talking to an in-memory GraphQL endpoint.

The SDK's objects are lazy (nothing is sent until a value is awaited) and type-checked by
beartype as they are built, so a chain can be made and read here. The fake endpoint below
answers with the same shapes as a Dagger engine (IDs from `sync`, exit codes, and `EXEC_ERROR`
errors), which is all the engine reads; it does not pretend to run anything.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import dagger
import graphql
import pytest
from dagger.client._session import BaseConnection
from gql.transport.exceptions import TransportQueryError, TransportServerError

from parapipe.engine.api import StepRun, step_command
from parapipe.engine.build_context import setup_command
from parapipe.engine.dagger.engine import (
    DaggerEngine,
    dockerfile_base,
    output_lines,
    prepared_container,
    setup_container,
    step_container,
)
from parapipe.engine.dagger.probe import DaggerTarget
from parapipe.errors import EngineError, ImageBuildFailed, SpecError
from parapipe.model import CA_BUNDLE_PATH, DockerfileBuild, ImagePlan, ImageSpec, Location
from tests.helpers.steps import make_step_run

pytestmark = pytest.mark.anyio


Call = tuple[str, dict[str, Any]]


def calls(obj: dagger.Container | dagger.Directory | dagger.File) -> list[Call]:
    """The chain of API calls a lazy SDK object stands for (the SDK keeps it in its context)."""
    return [(f.name, dict(f.args)) for f in obj._ctx.selections]


def make_plan(tmp_path: Path, *, setup: tuple[str, ...] = (), ca: bool = True) -> ImagePlan:
    source = tmp_path / "source"
    (source / "pkg").mkdir(parents=True, exist_ok=True)
    (source / "pkg" / "a.py").write_text("print('a')\n")
    (source / "odd [name]*.txt").write_text("odd\n")
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    return ImagePlan(
        tag="parapipe/chain:0123",
        base_id="base-container-id",
        source=source,
        files=("odd [name]*.txt", "pkg/a.py"),
        workdir="/src",
        env={"SSL_CERT_FILE": CA_BUNDLE_PATH, "GREETING": "$not-expanded"},
        setup=setup,
        ca_bundle=bundle if ca else None,
        labels={"io.parapipe.pipeline": "chain"},
    )


def make_run(step: str, image_id: str, *commands: str, **env: str) -> StepRun:
    env = {"PARAPIPE_RUN_ID": "run-1", "PARAPIPE_STEP": step, **env}
    return make_step_run(step=step, image_id=image_id, commands=commands, env=env)


# -- the chains, without any connection ---------------------------------------------------


def test_the_pipeline_image_chain_follows_the_docker_engines_dockerfile(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    container = prepared_container(dagger.Client(), plan, tmp_path / "context")
    chain = calls(container)
    assert [name for name, _ in chain] == [
        "loadContainerFromID",
        "withLabel",
        "withFile",
        "withEnvVariable",
        "withEnvVariable",
        "withWorkdir",
        "withDirectory",
    ]
    assert chain[0][1] == {"id": "base-container-id"}  # the resolved base, loaded once
    assert chain[1][1] == {"name": "io.parapipe.pipeline", "value": "chain"}
    ca = chain[2][1]
    assert (ca["path"], ca["permissions"], ca["owner"]) == (CA_BUNDLE_PATH, 0o644, "0:0")
    assert calls(ca["source"]) == [
        ("host", {}),
        ("file", {"path": str(tmp_path / "context" / "ca-certificates.crt")}),
    ]
    # Literal values, in the plan's order: `$` is not expanded, as in the Dockerfile's ENV.
    assert [args for name, args in chain if name == "withEnvVariable"] == [
        {"name": "SSL_CERT_FILE", "value": CA_BUNDLE_PATH},
        {"name": "GREETING", "value": "$not-expanded"},
    ]
    assert chain[5][1] == {"path": "/src"}
    source = chain[6][1]
    assert (source["path"], source["owner"]) == ("/src", "0:0")
    assert calls(source["source"]) == [
        ("host", {}),
        ("directory", {"path": str(tmp_path / "context" / "source")}),
    ]


def test_without_a_ca_bundle_nothing_is_added_for_it(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, ca=False)
    names = [name for name, _ in calls(prepared_container(dagger.Client(), plan, tmp_path))]
    assert "withFile" not in names


def test_a_setup_command_runs_like_the_docker_engines_with_its_stderr_joined(
    tmp_path: Path,
) -> None:
    base = prepared_container(dagger.Client(), make_plan(tmp_path), tmp_path)
    name, args = calls(setup_container(base, 2, "make deps"))[-1]
    assert name == "withExec"
    assert args["args"][:4] == ["sh", "-c", 'exec "$@" 2>&1', "sh"]
    assert args["args"][4:] == setup_command(2, "make deps")
    assert args["expect"] == "ANY"


def test_a_step_starts_from_the_evaluated_image_and_runs_the_step_script() -> None:
    run = make_run("test", "built-image-id", "pytest -q", "echo done", TOKEN="a b$c")
    chain = calls(step_container(dagger.Client(), run))
    # The image is loaded by its ID: nothing of it (base, files, setup) is built again.
    assert chain[0] == ("loadContainerFromID", {"id": "built-image-id"})
    assert {name for name, _ in chain} == {
        "loadContainerFromID",
        "withEnvVariable",
        "withWorkdir",
        "withExec",
    }
    assert [args for name, args in chain if name == "withEnvVariable"] == [
        {"name": "PARAPIPE_RUN_ID", "value": "run-1"},
        {"name": "PARAPIPE_STEP", "value": "test"},
        {"name": "TOKEN", "value": "a b$c"},
    ]
    assert chain[-2] == ("withWorkdir", {"path": "/src"})
    name, args = chain[-1]
    assert name == "withExec"
    assert args == {
        "args": step_command(("pytest -q", "echo done")),
        "useEntrypoint": True,
        "expect": "ANY",
    }


def test_the_needs_outputs_are_merged_into_the_workdir_before_the_step(tmp_path: Path) -> None:
    build, docs = tmp_path / "build", tmp_path / "docs"
    run = dataclasses.replace(make_run("smoke", "built-image-id", "ls dist"), inputs=(build, docs))
    chain = calls(step_container(dagger.Client(), run))
    written = [args for name, args in chain if name == "withDirectory"]
    assert [args["path"] for args in written] == ["/src", "/src"]
    assert [args["owner"] for args in written] == ["0:0", "0:0"]
    assert chain[-1][0] == "withExec"


def test_a_dockerfile_base_is_built_from_its_context(tmp_path: Path) -> None:
    build = DockerfileBuild(
        context=tmp_path, dockerfile=tmp_path / "ci" / "Containerfile", args={"PY": "3.12"}
    )
    chain = calls(dockerfile_base(dagger.Client(), build, image_spec(tmp_path)))
    assert chain[:2] == [("host", {}), ("directory", {"path": str(tmp_path)})]
    name, args = chain[2]
    assert name == "dockerBuild"
    assert args["dockerfile"] == "ci/Containerfile"
    assert args["buildArgs"] == [{"name": "PY", "value": "3.12"}]


def test_a_dockerfile_outside_its_context_is_a_spec_error(tmp_path: Path) -> None:
    build = DockerfileBuild(context=tmp_path / "ctx", dockerfile=tmp_path / "Dockerfile")
    with pytest.raises(SpecError, match="needs the Dockerfile inside the build context"):
        dockerfile_base(dagger.Client(), build, image_spec(tmp_path))


def test_output_lines_match_the_docker_engines_line_splitting() -> None:
    assert output_lines("") == []
    assert output_lines("a\nb\n") == ["a", "b"]
    assert output_lines("a\r\n\nno newline") == ["a", "", "no newline"]
    assert output_lines("x" * (64 * 1024 + 3) + "\n") == ["x" * 64 * 1024, "xxx"]


def image_spec(tmp_path: Path) -> ImageSpec:
    return ImageSpec(
        origin=DockerfileBuild(context=tmp_path, dockerfile=tmp_path / "Dockerfile"),
        source=tmp_path,
        exclude=(),
        workdir="/src",
        env={},
        setup=(),
        host_ca=False,
        location=Location(file="ci.yaml", line=1, column=1),
    )


# -- the engine against an in-memory endpoint ---------------------------------------------

SCHEMA = graphql.build_schema("""
    scalar ContainerID
    scalar DirectoryID
    scalar FileID
    enum ReturnType { ANY FAILURE SUCCESS }
    input BuildArg { name: String!, value: String! }
    interface Node { id: ID! }
    type Query {
      container: Container!
      host: Host!
      loadContainerFromID(id: ContainerID!): Container!
      node(id: ID!): Node
    }
    type Host {
      directory(path: String!, exclude: [String!], include: [String!], noCache: Boolean,
                gitignore: Boolean): Directory!
      file(path: String!, noCache: Boolean): File!
    }
    type Directory implements Node {
      id: ID!
      dockerBuild(dockerfile: String, buildArgs: [BuildArg!]): Container!
    }
    type File implements Node { id: ID! }
    type Container implements Node {
      id: ID!
      sync: ID!
      from(address: String!): Container!
      withLabel(name: String!, value: String!): Container!
      withFile(path: String!, source: FileID!, permissions: Int, owner: String): Container!
      withEnvVariable(name: String!, value: String!, expand: Boolean): Container!
      withWorkdir(path: String!): Container!
      withDirectory(path: String!, source: DirectoryID!, owner: String): Container!
      withExec(args: [String!]!, useEntrypoint: Boolean, expect: ReturnType): Container!
      exitCode: Int!
      stdout: String!
      stderr: String!
    }
""")

Outcome = tuple[int, str, str]  # exit code, stdout, stderr


@dataclass
class FakeEndpoint:
    """Answers the SDK's queries: `sync` evaluates a chain (and remembers it under a new ID),
    an exec's outcome comes from `outcome`, exits outside `expect` become `EXEC_ERROR`s."""

    outcome: Callable[[list[Call]], Outcome]
    fail_with: Exception | None = None
    queries: list[str] = field(default_factory=list)
    evaluated: dict[str, list[Call]] = field(default_factory=dict)  # ID -> the whole chain
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def get_schema(self) -> graphql.GraphQLSchema:
        return SCHEMA

    async def execute(self, request: Any) -> dict[str, Any]:
        self.queries.append(graphql.print_ast(request.document))
        await anyio.lowlevel.checkpoint()
        if self.fail_with is not None:
            raise self.fail_with
        chain = self._chain(request.document.definitions[0].selection_set)
        leaf, _ = chain[-1]
        whole = self._expand(chain[:-1])
        if leaf == "sync":
            self._check_expectation(whole)
            value: Any = f"ctr-{next(self._ids)}"
            self.evaluated[value] = whole
        elif leaf == "id":
            value = next((a["id"] for n, a in chain if n == "node"), None)
            if value is None:  # a directory or file passed as an argument, by its ID
                value = f"obj-{next(self._ids)}"
                self.evaluated[value] = whole
        else:
            code, stdout, stderr = self.outcome(whole)
            value = {"exitCode": code, "stdout": stdout, "stderr": stderr}[leaf]
        return self._nest(chain, value)

    def _chain(self, selection_set: Any) -> list[Call]:
        found: list[Call] = []
        while selection_set is not None:
            node = selection_set.selections[0]
            if isinstance(node, graphql.InlineFragmentNode):
                selection_set = node.selection_set
                continue
            args = {a.name.value: graphql.value_from_ast_untyped(a.value) for a in node.arguments}
            found.append((node.name.value, args))
            selection_set = node.selection_set
        return found

    def _expand(self, chain: list[Call]) -> list[Call]:
        """`chain` with a leading load by ID replaced by the chain that made that ID."""
        name, args = chain[0]
        if name in ("loadContainerFromID", "node") and args["id"] in self.evaluated:
            return [*self.evaluated[args["id"]], *chain[1:]]
        return chain

    def _check_expectation(self, whole: list[Call]) -> None:
        execs = [args for name, args in whole if name == "withExec"]
        if not execs:
            return
        code, stdout, stderr = self.outcome(whole)
        allowed = code == 0 or (execs[-1].get("expect") == "ANY" and not 128 <= code <= 191)
        if not allowed:
            raise TransportQueryError(
                f"exit code: {code}",
                errors=[
                    {
                        "message": f"process did not complete successfully: exit code: {code}",
                        "extensions": {
                            "_type": "EXEC_ERROR",
                            "cmd": execs[-1]["args"],
                            "exitCode": code,
                            "stdout": stdout,
                            "stderr": stderr,
                        },
                    }
                ],
            )

    @staticmethod
    def _nest(chain: list[Call], value: Any) -> dict[str, Any]:
        for name, _ in reversed(chain):
            value = {name: value}
        return value


class FakeConnection(BaseConnection):
    def __init__(self, endpoint: FakeEndpoint) -> None:
        self.session = endpoint  # type: ignore[assignment]


def last_exec(whole: list[Call]) -> list[str]:
    return next(args["args"] for name, args in reversed(whole) if name == "withExec")


def env_of(whole: list[Call]) -> dict[str, str]:
    return {args["name"]: args["value"] for name, args in whole if name == "withEnvVariable"}


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def engine_with(endpoint: FakeEndpoint, tmp_path: Path) -> tuple[DaggerEngine, Any]:
    engine = DaggerEngine(DaggerTarget(session=True, cli=None, why="test"), checked=True)
    client = dagger.Client.from_connection(FakeConnection(endpoint))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return engine, engine.using(client, scratch)


def step_outcomes(whole: list[Call]) -> Outcome:
    """Setup commands pass; a step exits with the number in its STEP_EXIT variable."""
    env = env_of(whole)
    if "PARAPIPE_STEP" not in env:
        return 0, f"$ {last_exec(whole)[-1]}\n", ""
    code = int(env.get("STEP_EXIT", "0"))
    return code, f"$ true\n{env['PARAPIPE_STEP']} says hi\n", ""


async def test_the_image_is_evaluated_once_and_every_step_starts_from_it(tmp_path: Path) -> None:
    endpoint = FakeEndpoint(step_outcomes)
    engine, opened = engine_with(endpoint, tmp_path)
    plan = make_plan(tmp_path, setup=("echo one", "echo two"))
    image_log: list[str] = []
    logs: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    codes: dict[str, int] = {}
    with opened:
        image_id = await engine.build_image(plan, image_log.append)

        async def step(name: str) -> None:
            codes[name] = await engine.run_step(make_run(name, image_id, "true"), logs[name].append)

        async with anyio.create_task_group() as steps:
            for name in logs:
                steps.start_soon(step, name)

    # Evaluated before any step, in three syncs (the files, then each setup command on the one
    # before), once: no step's query builds any of it again.
    building = [i for i, q in enumerate(endpoint.queries) if "withDirectory" in q]
    first_step = next(i for i, q in enumerate(endpoint.queries) if "PARAPIPE_STEP" in q)
    assert len(building) == 1
    assert "sync" in endpoint.queries[building[0]]
    syncs = [i for i, q in enumerate(endpoint.queries) if "sync" in q and "PARAPIPE_STEP" not in q]
    assert len(syncs) == 3
    assert max(syncs) < first_step
    image_chain = endpoint.evaluated[image_id]
    assert [last_exec(image_chain)[-1]] == ["echo two"]
    assert sum(name == "withDirectory" for name, _ in image_chain) == 1
    step_queries = [q for q in endpoint.queries if "PARAPIPE_STEP" in q]
    assert step_queries
    assert all(f'loadContainerFromID(id: "{image_id}")' in q for q in step_queries)
    for name in logs:
        evaluated = next(
            c for c in endpoint.evaluated.values() if env_of(c).get("PARAPIPE_STEP") == name
        )
        assert evaluated[: len(image_chain)] == image_chain  # the image's chain, then the step
        assert logs[name] == ["$ true", f"{name} says hi"]
    assert codes == {"a": 0, "b": 0, "c": 0}
    # The build context holds exactly the plan's files.
    source_id = next(a["source"] for n, a in image_chain if n == "withDirectory")
    assert endpoint.evaluated[source_id][:1] == [("host", {})]
    source = Path(endpoint.evaluated[source_id][1][1]["path"])
    assert files_under(source) == ["odd [name]*.txt", "pkg/a.py"]
    assert image_log[0].startswith("parapipe: building parapipe/chain:0123 with Dagger")
    assert image_log[1:] == ["$ echo one", "$ echo two"]


@pytest.mark.parametrize("code", [1, 3, 127, 128, 137, 191, 192, 255])
async def test_every_exit_code_is_the_steps_own_even_those_dagger_raises_for(
    tmp_path: Path, code: int
) -> None:
    endpoint = FakeEndpoint(step_outcomes)
    engine, opened = engine_with(endpoint, tmp_path)
    lines: list[str] = []
    with opened:
        exit_code = await engine.run_step(
            make_run("s", "img", "exit 1", STEP_EXIT=str(code)), lines.append
        )
    assert exit_code == code
    assert lines == ["$ true", "s says hi"]


async def test_a_failing_setup_command_fails_the_build_as_with_docker(tmp_path: Path) -> None:
    def outcomes(whole: list[Call]) -> Outcome:
        command = last_exec(whole)[-1]
        return (4 if command == "make deps" else 0), f"$ {command}\nno rule\n", ""

    engine, opened = engine_with(FakeEndpoint(outcomes), tmp_path)
    lines: list[str] = []
    with opened, pytest.raises(ImageBuildFailed) as caught:
        await engine.build_image(make_plan(tmp_path, setup=("true", "make deps")), lines.append)
    assert str(caught.value) == "setup command 2 `make deps` failed with exit 4"
    assert lines[-2:] == ["$ make deps", "no rule"]


async def test_a_setup_command_killed_by_a_signal_fails_the_build(tmp_path: Path) -> None:
    engine, opened = engine_with(FakeEndpoint(lambda whole: (137, "killed\n", "")), tmp_path)
    with (
        opened,
        pytest.raises(ImageBuildFailed, match=r"^setup command 1 `sleep 9` failed with exit 137$"),
    ):
        await engine.build_image(make_plan(tmp_path, setup=("sleep 9",)), lambda line: None)


async def test_an_engine_fault_during_a_step_is_an_engine_error(tmp_path: Path) -> None:
    endpoint = FakeEndpoint(step_outcomes, fail_with=TransportServerError("502 Bad Gateway", 502))
    engine, opened = engine_with(endpoint, tmp_path)
    with opened, pytest.raises(EngineError) as caught:
        await engine.run_step(make_run("s", "img", "true"), lambda line: None)
    message = str(caught.value)
    assert message.startswith("dagger could not run step 's': Unexpected response from engine")
    assert "\n" not in message


async def test_a_base_that_cannot_be_pulled_fails_the_image(tmp_path: Path) -> None:
    error = TransportQueryError(
        "pull failed",
        errors=[{"message": "failed to resolve source metadata for docker.io/x:1: not found"}],
    )
    engine, opened = engine_with(FakeEndpoint(step_outcomes, fail_with=error), tmp_path)
    spec = ImageSpec(**{**image_spec(tmp_path).__dict__, "origin": "x:1"})
    with opened, pytest.raises(ImageBuildFailed) as caught:
        await engine.resolve_base(spec, lambda line: None)
    assert str(caught.value) == (
        "base image 'x:1' could not be pulled by Dagger:"
        " failed to resolve source metadata for docker.io/x:1: not found"
    )


async def test_the_engine_refuses_to_work_outside_its_session(tmp_path: Path) -> None:
    engine = DaggerEngine(DaggerTarget(session=True, cli=None, why="test"), checked=True)
    with pytest.raises(RuntimeError, match="outside its session"):
        await engine.run_step(make_run("s", "img", "true"), lambda line: None)
