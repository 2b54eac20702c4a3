"""Spec loading: a valid spec becomes the models; every bad input is one error at FILE:LINE:COL."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parapipe.errors import ExitCode, SpecError
from parapipe.model import DEFAULT_WORKDIR, DockerfileBuild, Location
from parapipe.spec.load import NOT_SUPPORTED_YET, load_pipeline

FULL_SPEC = """\
name: ci
image:
  build: {context: docker, dockerfile: ci.Dockerfile, args: {PY: "3.12", N: 2}}
  source: ..
  exclude: [".git", "**/__pycache__"]
  workdir: /work/
  env: {LANG: C.UTF-8, DEBUG: true, QUIET: off, RATIO: 1.5, COUNT: 7}
  setup:
    - pip install -e '.[test]'
  host_ca: false
steps:
  lint:  {run: ruff check .}
  types: {run: mypy src}
  test:
    run: [pytest -q tests/unit, pytest -q tests/integration]
    needs: lint
    env: {PYTHONHASHSEED: "0"}
  package: {run: python -m build, needs: [test, types]}
"""

MINIMAL_SPEC = """\
image: {from: debian:bookworm-slim}
steps:
  lint:
    run: ruff check .
"""


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in an empty folder, so spec paths are relative as a user would type them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def spec_error(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    assert info.value.exit_code is ExitCode.USAGE
    assert "\n" not in str(info.value)
    return str(info.value)


def test_full_spec_becomes_the_models(cwd: Path) -> None:
    (cwd / ".git").mkdir()
    write(cwd / "ci" / "docker" / "ci.Dockerfile", "FROM scratch\n")
    spec = write(cwd / "ci" / "pipeline.yaml", FULL_SPEC)

    pipeline = load_pipeline(Path("ci/pipeline.yaml"))

    assert pipeline.name == "ci"
    assert pipeline.spec_path == spec
    assert pipeline.project_root == cwd
    image = pipeline.image
    assert image.origin == DockerfileBuild(
        context=cwd / "ci" / "docker",
        dockerfile=cwd / "ci" / "docker" / "ci.Dockerfile",
        args={"PY": "3.12", "N": "2"},
    )
    assert image.source == cwd  # `..` from the spec's folder
    assert image.exclude == (".git", "**/__pycache__")
    assert image.workdir == "/work"
    assert image.env == {
        "LANG": "C.UTF-8",
        "DEBUG": "true",
        "QUIET": "false",
        "RATIO": "1.5",
        "COUNT": "7",
    }
    assert image.setup == ("pip install -e '.[test]'",)
    assert image.host_ca is False
    assert image.location == Location(file="ci/pipeline.yaml", line=2, column=1)

    assert list(pipeline.steps) == ["lint", "types", "test", "package"]
    test = pipeline.steps["test"]
    assert test.name == "test"
    assert test.run == ("pytest -q tests/unit", "pytest -q tests/integration")
    assert test.needs == ("lint",)
    assert test.env == {"PYTHONHASHSEED": "0"}
    assert test.location == Location(file="ci/pipeline.yaml", line=14, column=3)
    assert pipeline.steps["package"].needs == ("test", "types")
    assert pipeline.steps["lint"].run == ("ruff check .",)
    assert pipeline.steps["lint"].needs == ()
    assert pipeline.steps["lint"].env == {}


def test_defaults_use_the_git_root_and_the_file_stem(cwd: Path) -> None:
    (cwd / "repo" / ".git").mkdir(parents=True)
    write(cwd / "repo" / "pipelines" / "deep" / "nightly.yaml", MINIMAL_SPEC)

    pipeline = load_pipeline(Path("repo/pipelines/deep/nightly.yaml"))

    assert pipeline.name == "nightly"
    assert pipeline.project_root == cwd / "repo"
    assert pipeline.state_dir == cwd / "repo" / ".parapipe"
    image = pipeline.image
    assert image.origin == "debian:bookworm-slim"
    assert image.source == cwd / "repo"
    assert image.exclude == ()
    assert image.workdir == DEFAULT_WORKDIR
    assert image.env == {}
    assert image.setup == ()
    assert image.host_ca is True


def test_a_git_file_marks_the_root_too(cwd: Path) -> None:
    (cwd / ".git").write_text("gitdir: /elsewhere/.git/worktrees/x\n")
    write(cwd / "pipelines" / "ci.yaml", MINIMAL_SPEC)
    assert load_pipeline(Path("pipelines/ci.yaml")).project_root == cwd


def test_source_does_not_move_the_project_root(cwd: Path) -> None:
    (cwd / ".git").mkdir()
    (cwd / "app").mkdir()
    write(cwd / "ci.yaml", MINIMAL_SPEC.replace("}", ", source: app}", 1))
    pipeline = load_pipeline(Path("ci.yaml"))
    assert pipeline.image.source == cwd / "app"
    assert pipeline.project_root == cwd


def test_without_git_the_spec_folder_is_the_root(cwd: Path) -> None:
    if any((folder / ".git").exists() for folder in cwd.parents):
        pytest.skip("the temporary folder is inside a git repository")
    write(cwd / "pipelines" / "ci.yaml", MINIMAL_SPEC)
    pipeline = load_pipeline(Path("pipelines/ci.yaml"))
    assert pipeline.project_root == cwd / "pipelines"
    assert pipeline.image.source == cwd / "pipelines"


def test_build_defaults_to_the_spec_folder_and_its_dockerfile(cwd: Path) -> None:
    write(cwd / "Dockerfile", "FROM scratch\n")
    write(cwd / "ci.yaml", MINIMAL_SPEC.replace("from: debian:bookworm-slim", "build: {}"))
    build = load_pipeline(Path("ci.yaml")).image.origin
    assert build == DockerfileBuild(context=cwd, dockerfile=cwd / "Dockerfile", args={})


def test_build_may_name_just_the_context(cwd: Path) -> None:
    write(cwd / "docker" / "Dockerfile", "FROM scratch\n")
    write(cwd / "ci.yaml", MINIMAL_SPEC.replace("from: debian:bookworm-slim", "build: docker"))
    build = load_pipeline(Path("ci.yaml")).image.origin
    assert isinstance(build, DockerfileBuild)
    assert build.dockerfile == cwd / "docker" / "Dockerfile"


def test_merge_keys_share_settings_between_steps(cwd: Path) -> None:
    write(
        cwd / "ci.yaml",
        """\
        image: {from: busybox}
        steps:
          unit: &python {run: pytest, env: {PYTHONHASHSEED: "0"}}
          docs:
            <<: *python
            run: make docs
        """,
    )
    docs = load_pipeline(Path("ci.yaml")).steps["docs"]
    assert docs.run == ("make docs",)
    assert docs.env == {"PYTHONHASHSEED": "0"}


def test_yaml_11_keywords_as_keys_stay_text(cwd: Path) -> None:
    write(cwd / "ci.yaml", MINIMAL_SPEC + "  on: {run: 'true', env: {yes: 1}}\n")
    steps = load_pipeline(Path("ci.yaml")).steps
    assert steps["on"].env == {"yes": "1"}


def test_an_absolute_path_under_the_cwd_is_shown_relative(cwd: Path) -> None:
    write(cwd / "ci.yaml", "name: 3\n")
    assert spec_error(cwd / "ci.yaml").startswith("ci.yaml:1:7: ")


def test_an_absolute_path_elsewhere_stays_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    spec = write(tmp_path / "ci.yaml", "name: 3\n")
    assert spec_error(spec).startswith(f"{spec}:1:7: ")


def test_a_missing_spec_file(cwd: Path) -> None:
    assert spec_error(Path("pipelines/ci.yaml")) == "pipelines/ci.yaml: no such spec file"


def test_a_folder_is_not_a_spec_file(cwd: Path) -> None:
    (cwd / "ci.yaml").mkdir()
    assert spec_error(Path("ci.yaml")) == "ci.yaml: is a folder, not a spec file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_spec_file(cwd: Path) -> None:
    spec = write(cwd / "ci.yaml", MINIMAL_SPEC)
    spec.chmod(0)
    assert spec_error(Path("ci.yaml")) == "ci.yaml: cannot read spec file (Permission denied)"


def test_a_spec_that_is_not_utf8(cwd: Path) -> None:
    (cwd / "ci.yaml").write_bytes(b"image: {from: busybox}\nname: caf\xe9\n")
    assert spec_error(Path("ci.yaml")) == "ci.yaml:2:10: the spec is not UTF-8 text"


def test_a_not_yet_supported_step_key_is_rejected_with_its_own_message(
    cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every key of this version is supported; the mechanism stays for the next feature's keys.
    later = {**NOT_SUPPORTED_YET, "step": frozenset({"matrix"})}
    monkeypatch.setattr("parapipe.spec.keys.NOT_SUPPORTED_YET", later)
    write(cwd / "ci.yaml", MINIMAL_SPEC + "    matrix: 1\n")
    message = "ci.yaml:5:5: 'matrix' is not supported yet by this version of parapipe"
    assert spec_error(Path("ci.yaml")) == message


# Each case: the spec's text, then the expected "LINE:COL: message" (the file is ci.yaml).
BAD_SPECS = {
    "empty file": ("", "1:1: the spec is empty; it needs 'image' and 'steps'"),
    "only a comment": ("# nothing\n", "1:1: the spec is empty; it needs 'image' and 'steps'"),
    "top level is a list": (
        "- image\n- steps\n",
        "1:1: the spec must be a mapping with 'image' and 'steps', not a list",
    ),
    "top level is a string": (
        "hello\n",
        "1:1: the spec must be a mapping with 'image' and 'steps', not a string",
    ),
    "syntax error": (
        "image: {from: busybox}\nsteps: [\n",
        "3:1: invalid YAML: did not find expected node content (while parsing a flow node)",
    ),
    "mapping value in a plain scalar": (
        "image: from: busybox\n",
        "1:12: invalid YAML: mapping values are not allowed in this context",
    ),
    "two documents": (
        MINIMAL_SPEC + "---\nname: other\n",
        "5:1: invalid YAML: found another document"
        " (expected a single document in the stream on line 1)",
    ),
    "undefined alias": (
        "image: *nothing\n",
        "1:8: invalid YAML: found undefined alias",
    ),
    "control character": (
        "name: a\x07b\n",
        "1:8: invalid YAML: character #x0007 is not allowed (control characters are not allowed)",
    ),
    "duplicate step": (
        MINIMAL_SPEC + "  lint: {run: other}\n",
        "5:3: duplicate key 'lint' in 'steps' (first defined on line 3)",
    ),
    "duplicate top-level key": (
        MINIMAL_SPEC + "image: {from: busybox}\n",
        "5:1: duplicate key 'image' in the spec (first defined on line 1)",
    ),
    "duplicate env name": (
        "image:\n  from: busybox\n  env:\n    A: 1\n    B: 2\n    A: 3\n",
        "6:5: duplicate key 'A' in 'image.env' (first defined on line 4)",
    ),
    "unknown step key": (
        MINIMAL_SPEC + "  test:\n    run: pytest\n    nedds: [lint]\n",
        "7:5: unknown key 'nedds' in step 'test' (did you mean 'needs'?)",
    ),
    "unknown top-level key": (
        MINIMAL_SPEC + "stpes: {}\n",
        "5:1: unknown key 'stpes' in the spec (did you mean 'steps'?)",
    ),
    "unknown key with no near miss": (
        MINIMAL_SPEC + "volumes: {}\n",
        "5:1: unknown key 'volumes' in the spec",
    ),
    "unknown image key": (
        "image: {from: busybox, workdr: /src}\n",
        "1:24: unknown key 'workdr' in 'image' (did you mean 'workdir'?)",
    ),
    "unknown build key": (
        "image: {build: {contxt: .}}\n",
        "1:17: unknown key 'contxt' in 'image.build' (did you mean 'context'?)",
    ),
    "defaults with a key that is not an execution option": (
        "defaults: {env: {A: b}}\n" + MINIMAL_SPEC,
        "1:12: unknown key 'env' in 'defaults'",
    ),
    "defaults is a list": (
        "defaults: [a]\n" + MINIMAL_SPEC,
        "1:11: 'defaults' must be a mapping, not a list",
    ),
    "timeout without a unit": (
        MINIMAL_SPEC + "    timeout: 90\n",
        "5:14: 'timeout' of step 'lint' needs a unit: '90s', '90m' or '90h'",
    ),
    "timeout that is not a duration": (
        MINIMAL_SPEC + "    timeout: soon\n",
        "5:14: 'timeout' of step 'lint' must be a duration such as '90s', '10m' or '1h', not 'soon'",
    ),
    "timeout of zero": (
        MINIMAL_SPEC + "    timeout: 0s\n",
        "5:14: 'timeout' of step 'lint' must be longer than 0",
    ),
    "timeout in defaults without a unit": (
        "defaults: {timeout: 5}\n" + MINIMAL_SPEC,
        "1:21: 'timeout' of 'defaults' needs a unit: '5s', '5m' or '5h'",
    ),
    "retries negative": (
        MINIMAL_SPEC + "    retries: -1\n",
        "5:14: 'retries' of step 'lint' must be between 0 and 100, not -1",
    ),
    "retries a string": (
        MINIMAL_SPEC + "    retries: twice\n",
        "5:14: 'retries' of step 'lint' must be a whole number, not a string",
    ),
    "retry_on an exit code of 0": (
        MINIMAL_SPEC + "    retry_on: [1, 0]\n",
        "5:19: 'retry_on' of step 'lint': 0 is not a failing exit code (1-255)",
    ),
    "retry_on a word": (
        MINIMAL_SPEC + "    retry_on: [flaky]\n",
        "5:16: each item of 'retry_on' of step 'lint' must be an exit code (1-255) or 'timeout', not a string",
    ),
    "allow_failure a string": (
        MINIMAL_SPEC + "    allow_failure: maybe\n",
        "5:20: 'allow_failure' of step 'lint' must be true or false, not a string",
    ),
    "needs is a number": (
        MINIMAL_SPEC + "  test: {run: pytest, needs: 3}\n",
        "5:30: 'needs' of step 'test' must be a string or a list of strings, not an integer",
    ),
    "needs item is a mapping": (
        MINIMAL_SPEC + "  test: {run: pytest, needs: [lint, {a: b}]}\n",
        "5:37: each item of 'needs' of step 'test' must be a string, not a mapping",
    ),
    "env is a list": (
        MINIMAL_SPEC + "    env: [a]\n",
        "5:10: 'env' of step 'lint' must be a mapping of names to values, not a list",
    ),
    "run is a mapping": (
        "image: {from: busybox}\nsteps:\n  lint:\n    run: {}\n",
        "4:10: 'run' of step 'lint' must be a string or a list of strings, not a mapping",
    ),
    "run is a boolean": (
        "image: {from: busybox}\nsteps:\n  lint: {run: yes}\n",
        "3:15: 'run' of step 'lint' must be a string or a list of strings, not a boolean",
    ),
    "image is a string": (
        "image: debian\n",
        "1:8: 'image' must be a mapping, not a string (did you mean 'image: {from: debian}'?)",
    ),
    "image is missing": (
        "steps:\n  lint: {run: ruff}\n",
        "1:1: missing 'image': the image every step runs in ('from' an image or 'build')",
    ),
    "name is a number": (
        "name: 3\n" + MINIMAL_SPEC,
        "1:7: 'name' must be a string, not an integer",
    ),
    "name is blank": (
        "name: ' '\n" + MINIMAL_SPEC,
        "1:7: 'name' must be one non-empty line",
    ),
    "env value is null": (
        "image: {from: busybox, env: {A: }}\n",
        "1:33: 'A' in 'image.env' has no value; write \"\" for an empty string",
    ),
    "env value is a list": (
        "image: {from: busybox, env: {A: [1]}}\n",
        "1:33: 'A' in 'image.env' must be a string, number or boolean, not a list",
    ),
    "env name is invalid": (
        MINIMAL_SPEC + "    env: {1A: x}\n",
        "5:11: invalid variable name '1A' in 'env' of step 'lint': use letters, digits and '_',"
        " not starting with a digit",
    ),
    "env name with a dash": (
        MINIMAL_SPEC + "    env:\n      MY-VAR: x\n",
        "6:7: invalid variable name 'MY-VAR' in 'env' of step 'lint': use letters, digits and"
        " '_', not starting with a digit",
    ),
    "build arg name is invalid": (
        "image: {build: {args: {a b: c}}}\n",
        "1:24: invalid variable name 'a b' in 'image.build.args': use letters, digits and '_',"
        " not starting with a digit",
    ),
    "step name with a space": (
        "image: {from: busybox}\nsteps:\n  unit tests: {run: pytest}\n",
        "3:3: invalid step name 'unit tests': use letters, digits, '_' and '-',"
        " starting with a letter or '_'",
    ),
    "step name starting with a digit": (
        "image: {from: busybox}\nsteps:\n  2nd: {run: pytest}\n",
        "3:3: invalid step name '2nd': use letters, digits, '_' and '-',"
        " starting with a letter or '_'",
    ),
    "step name with a slash": (
        "image: {from: busybox}\nsteps:\n  ../x: {run: pytest}\n",
        "3:3: invalid step name '../x': use letters, digits, '_' and '-',"
        " starting with a letter or '_'",
    ),
    "step names differing only in case": (
        MINIMAL_SPEC + "  Lint: {run: other}\n",
        "5:3: step 'Lint' differs from step 'lint' (line 3) only in case",
    ),
    "steps missing": (
        "image: {from: busybox}\n",
        "1:1: missing 'steps': define at least one step",
    ),
    "steps empty": (
        "image: {from: busybox}\nsteps: {}\n",
        "2:8: 'steps' is empty: define at least one step",
    ),
    "steps null": (
        "image: {from: busybox}\nsteps:\n",
        "2:7: 'steps' is empty: define at least one step",
    ),
    "steps is a list": (
        "image: {from: busybox}\nsteps: [lint]\n",
        "2:8: 'steps' must be a mapping of step names to steps, not a list",
    ),
    "step is a string": (
        "image: {from: busybox}\nsteps:\n  lint: ruff check .\n",
        "3:9: step 'lint' must be a mapping such as '{run: make test}', not a string",
    ),
    "run missing": (
        "image: {from: busybox}\nsteps:\n  lint: {needs: []}\n",
        "3:3: step 'lint' has no 'run': the commands it runs",
    ),
    "run empty list": (
        "image: {from: busybox}\nsteps:\n  lint: {run: []}\n",
        "3:15: 'run' of step 'lint' must not be empty",
    ),
    "run empty command": (
        "image: {from: busybox}\nsteps:\n  lint:\n    run:\n      - ruff\n      - '  '\n",
        "6:9: 'run' of step 'lint' has an empty command",
    ),
    "setup empty command": (
        "image: {from: busybox, setup: ''}\n",
        "1:31: 'image.setup' has an empty command",
    ),
    "needs an unknown step": (
        MINIMAL_SPEC + "  test:\n    run: pytest\n    needs: [types, lnit]\n  types: {run: mypy}\n",
        "7:20: step 'test' needs 'lnit', which is not a step (did you mean 'lint'?)",
    ),
    "needs an unknown step, no near miss": (
        MINIMAL_SPEC + "  test: {run: pytest, needs: deploy}\n",
        "5:30: step 'test' needs 'deploy', which is not a step",
    ),
    "needs itself": (
        MINIMAL_SPEC + "  test: {run: pytest, needs: [lint, test]}\n",
        "5:37: step 'test' needs itself",
    ),
    "needs listed twice": (
        MINIMAL_SPEC + "  test: {run: pytest, needs: [lint, lint]}\n",
        "5:37: 'lint' is listed twice in 'needs' of step 'test'",
    ),
    "dependency cycle": (
        "image: {from: busybox}\n"
        "steps:\n"
        "  ok: {run: 'true'}\n"
        "  c: {run: 'true', needs: a}\n"
        "  a: {run: 'true', needs: [ok, b]}\n"
        "  b: {run: 'true', needs: c}\n",
        "4:3: dependency cycle: c -> a -> b -> c",
    ),
    "image with both from and build": (
        "image:\n  from: busybox\n  build: {}\n",
        "1:1: 'image' needs exactly one of 'from' (a base image) and 'build' (a Dockerfile),"
        " not both",
    ),
    "image with neither from nor build": (
        "steps: {}\nimage: {env: {A: b}}\n",
        "2:1: 'image' needs exactly one of 'from' (a base image) and 'build' (a Dockerfile),"
        " found neither",
    ),
    "from is not an image reference": (
        "image: {from: Debian:12}\n",
        "1:15: 'image.from' must be an image reference such as 'debian:bookworm-slim'"
        " (lowercase name, optional :tag or @digest), not 'Debian:12'",
    ),
    "from has a space": (
        "image: {from: debian bookworm}\n",
        "1:15: 'image.from' must be an image reference such as 'debian:bookworm-slim'"
        " (lowercase name, optional :tag or @digest), not 'debian bookworm'",
    ),
    "build context missing": (
        "image:\n  build:\n    context: docker\n",
        "3:14: 'image.build.context' is not a folder: docker",
    ),
    "build dockerfile missing": (
        "image:\n  build: {dockerfile: ci.Dockerfile}\n",
        "2:23: 'image.build.dockerfile' is not a file: ci.Dockerfile",
    ),
    "build default dockerfile missing": (
        "image:\n  build: {args: {A: b}}\n",
        "2:3: no Dockerfile in the build context: Dockerfile (set 'image.build.dockerfile')",
    ),
    "build is a list": (
        "image: {build: [.]}\n",
        "1:16: 'image.build' must be a mapping (or a context folder), not a list",
    ),
    "source missing": (
        "image: {from: busybox, source: nowhere/x}\n",
        "1:32: 'image.source' is not a folder: nowhere/x",
    ),
    "source is a file": (
        "image: {from: busybox, source: ci.yaml}\n",
        "1:32: 'image.source' is not a folder: ci.yaml",
    ),
    "workdir relative": (
        "image: {from: busybox, workdir: src}\n",
        "1:33: 'image.workdir' must be an absolute POSIX path such as '/src', not 'src'",
    ),
    "workdir windows": (
        "image: {from: busybox, workdir: 'C:\\src'}\n",
        "1:33: 'image.workdir' must be an absolute POSIX path such as '/src', not 'C:\\src'",
    ),
    "workdir root": (
        "image: {from: busybox, workdir: /src/..}\n",
        "1:33: 'image.workdir' must not be '/': the project's files are copied into it",
    ),
    "exclude is a string": (
        "image: {from: busybox, exclude: .git}\n",
        "1:33: 'image.exclude' must be a list of gitignore patterns, not a string",
    ),
    "exclude item is a number": (
        "image: {from: busybox, exclude: [.git, 3]}\n",
        "1:40: each item of 'image.exclude' must be a string, not an integer",
    ),
    "exclude invalid pattern": (
        "image:\n  from: busybox\n  exclude:\n    - .git\n    - '!'\n",
        "5:7: invalid gitignore pattern '!' in 'image.exclude'",
    ),
    "exclude bad range": (
        "image: {from: busybox, exclude: ['[z-a]']}\n",
        "1:34: invalid gitignore pattern '[z-a]' in 'image.exclude'",
    ),
    "exclude comment": (
        "image: {from: busybox, exclude: ['#tmp']}\n",
        "1:34: pattern '#tmp' in 'image.exclude' matches nothing (blank, or a '#' comment)",
    ),
    "host_ca is a string": (
        "image: {from: busybox, host_ca: 'yes'}\n",
        "1:33: 'image.host_ca' must be a boolean, not a string",
    ),
    "key is a list": (
        "image: {from: busybox, env: {[A]: b}}\n",
        "1:30: keys in 'image.env' must be strings, not a list",
    ),
    "merge of a scalar": (
        "image: {from: busybox, <<: x}\n",
        "1:28: '<<' in 'image' must merge a mapping or a list of mappings, not a string",
    ),
    "explicit int tag on text": (
        "image: {from: busybox, env: {LANG: !!int C.UTF-8}}\n",
        "1:36: 'C.UTF-8' is tagged as an integer but is not one",
    ),
    "explicit bool tag on text": (
        "image: {from: busybox, host_ca: !!bool maybe}\n",
        "1:33: 'maybe' is tagged as a boolean but is not one",
    ),
    "env value is a date": (
        "image: {from: busybox, env: {DAY: 2024-01-31}}\n",
        "1:35: 'DAY' in 'image.env' must be a string, number or boolean, not a date",
    ),
}


@pytest.mark.parametrize(("text", "expected"), BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_bad_spec(cwd: Path, text: str, expected: str) -> None:
    (cwd / "ci.yaml").write_text(text, encoding="utf-8")
    assert spec_error(Path("ci.yaml")) == f"ci.yaml:{expected}"


MUTATIONS = [":", "- ", "{", "}", "[", "]", ",", " ", "\n", "  ", "*a", "&a ", "!!int ", "'", '"']


@settings(max_examples=300, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(FULL_SPEC)), st.sampled_from([*MUTATIONS, ""])),
        min_size=1,
        max_size=4,
    ),
    cut=st.integers(0, 3),
)
def test_a_damaged_spec_fails_only_with_a_spec_error(
    edits: list[tuple[int, str]], cut: int
) -> None:
    text = FULL_SPEC
    for position, insert in edits:
        # An empty insert deletes `cut` characters instead, so keys and values get broken too.
        text = text[:position] + insert + text[position + (0 if insert else cut) :]
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "ci" / "pipeline.yaml"
        write(Path(folder) / "ci" / "docker" / "ci.Dockerfile", "FROM scratch\n")
        spec.write_text(text, encoding="utf-8")
        try:
            load_pipeline(spec)
        except SpecError as exc:
            error: SpecError = exc
        else:
            return
    assert "\n" not in str(error)
    assert error.location is None or (error.location.line >= 1 and error.location.column >= 1)
