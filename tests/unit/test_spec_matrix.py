"""Matrix steps: GitHub Actions' expansion (product, exclude, include), instance names and
values, needs of a matrix step, selection on the command line, and every bad matrix as one
located error. Also outputs that two needs would hand on at the same path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from parapipe.errors import ExitCode, SpecError, UsageError
from parapipe.graph import select_steps
from parapipe.model import Location, MatrixSpec
from parapipe.spec.load import load_pipeline
from parapipe.spec.matrix import expand

AT = Location(file="ci.yaml", line=1, column=1)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec paths are shown relative to the current folder, as a user types them."""
    monkeypatch.chdir(tmp_path)


def spec(text: str, tmp_path: Path) -> Path:
    path = Path("ci.yaml")
    path.write_text("image: {from: busybox}\n" + textwrap.dedent(text))
    return path


def spec_error(text: str, tmp_path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_pipeline(spec(text, tmp_path))
    assert info.value.exit_code is ExitCode.USAGE
    message = str(info.value)
    assert "\n" not in message
    return message


def matrix(
    axes: dict[str, tuple[str, ...]],
    include: tuple[dict[str, str], ...] = (),
    exclude: tuple[dict[str, str], ...] = (),
) -> MatrixSpec:
    return MatrixSpec(axes=axes, include=include, exclude=exclude, location=AT)


def test_the_product_varies_the_first_key_slowest() -> None:
    got = expand(matrix({"version": ("10", "12"), "os": ("ubuntu", "windows")}))
    assert got == [
        {"version": "10", "os": "ubuntu"},
        {"version": "10", "os": "windows"},
        {"version": "12", "os": "ubuntu"},
        {"version": "12", "os": "windows"},
    ]


def test_include_follows_githubs_documented_example() -> None:
    # docs.github.com, "Expanding or adding matrix configurations", with its stated result.
    got = expand(
        matrix(
            {"fruit": ("apple", "pear"), "animal": ("cat", "dog")},
            include=(
                {"color": "green"},
                {"color": "pink", "animal": "cat"},
                {"fruit": "apple", "shape": "circle"},
                {"fruit": "banana"},
                {"fruit": "banana", "animal": "cat"},
            ),
        )
    )
    assert got == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_exclude_is_a_partial_match_and_include_comes_after_it() -> None:
    # docs.github.com, "Excluding matrix configurations": a partial match excludes.
    got = expand(
        matrix(
            {"os": ("macos", "windows"), "version": ("12", "14", "16"), "env": ("stg", "prod")},
            exclude=(
                {"os": "macos", "version": "12", "env": "prod"},
                {"os": "windows", "version": "16"},
            ),
        )
    )
    assert len(got) == 12 - 1 - 2
    assert {"os": "macos", "version": "12", "env": "prod"} not in got
    assert not [c for c in got if c["os"] == "windows" and c["version"] == "16"]
    # An excluded combination that an include entry names comes back, at the end.
    again = expand(matrix({"a": ("1", "2")}, exclude=({"a": "2"},), include=({"a": "2"},)))
    assert again == [{"a": "1"}, {"a": "2"}]


def test_include_only_matrix_and_extra_keys_on_a_matching_combination() -> None:
    assert expand(matrix({}, include=({"os": "x"}, {"os": "y"}))) == [{"os": "x"}, {"os": "y"}]
    got = expand(matrix({"py": ("3.11", "3.12")}, include=({"py": "3.12", "exp": "true"},)))
    assert got == [{"py": "3.11"}, {"py": "3.12", "exp": "true"}]


ISSUE_MATRIX = """
steps:
  test:
    run: echo $SHARD $PY
    matrix:
      SHARD: [0, 1, 2, 3]
      PY: ["3.11", "3.12"]
      exclude: [{SHARD: 3, PY: "3.11"}]
      include: [{SHARD: 0, PY: "3.13"}]
    env: {OTHER: x}
    outputs: [out]
  report: {run: ls, needs: [test]}
"""


def test_a_matrix_step_becomes_one_step_per_combination(tmp_path: Path) -> None:
    pipeline = load_pipeline(spec(ISSUE_MATRIX, tmp_path))
    instances = [name for name in pipeline.steps if name != "report"]
    assert instances == [
        "test[SHARD=0,PY=3.11]",
        "test[SHARD=0,PY=3.12]",
        "test[SHARD=1,PY=3.11]",
        "test[SHARD=1,PY=3.12]",
        "test[SHARD=2,PY=3.11]",
        "test[SHARD=2,PY=3.12]",
        "test[SHARD=3,PY=3.12]",
        "test[SHARD=0,PY=3.13]",
    ]
    first = pipeline.steps["test[SHARD=0,PY=3.11]"]
    assert dict(first.env) == {"OTHER": "x", "SHARD": "0", "PY": "3.11"}
    assert first.matrix is not None
    assert first.matrix.step == "test"
    assert first.matrix.label == "SHARD=0,PY=3.11"
    assert pipeline.steps["report"].needs == tuple(instances)


def test_values_are_strings_as_env_values_are(tmp_path: Path) -> None:
    pipeline = load_pipeline(
        spec(
            """
            steps:
              t: {run: "true", matrix: {A: ["3.10", 3.10, true, 007]}}
            """,
            tmp_path,
        )
    )
    assert list(pipeline.steps) == ["t[A=3.10]", "t[A=3.1]", "t[A=true]", "t[A=7]"]


def test_selection_takes_all_instances_one_instance_or_says_did_you_mean(tmp_path: Path) -> None:
    pipeline = load_pipeline(spec(ISSUE_MATRIX, tmp_path))
    assert len(select_steps(pipeline, ["test"])) == 8
    assert select_steps(pipeline, ["test[SHARD=1,PY=3.12]"]) == ["test[SHARD=1,PY=3.12]"]
    # Values in another order name the same instance.
    assert select_steps(pipeline, ["test[PY=3.12,SHARD=1]"]) == ["test[SHARD=1,PY=3.12]"]
    report = select_steps(pipeline, ["report"])
    assert report[-1] == "report"
    assert len(report) == 9
    assert select_steps(pipeline, ["test"], with_needs=False)[0] == "test[SHARD=0,PY=3.11]"
    with pytest.raises(UsageError) as info:
        select_steps(pipeline, ["test[SHARD=1,PY=3.13]"])
    assert str(info.value) == (
        "ci.yaml: step 'test' has no instance 'test[SHARD=1,PY=3.13]'"
        " (did you mean 'test[SHARD=1,PY=3.12]'?)"
    )
    with pytest.raises(UsageError, match=r"no step named 'tset' \(did you mean 'test'\?\)"):
        select_steps(pipeline, ["tset"])


@pytest.mark.parametrize(
    ("matrix_text", "expected"),
    [
        ("{}", "ci.yaml:5:13: 'matrix' of step 't' is empty"),
        ("{A: []}", "ci.yaml:5:17: 'A' in 'matrix' of step 't' is empty"),
        ("{A: [[1]]}", "ci.yaml:5:18: each value of 'A' in 'matrix' of step 't' must be a string,"),
        ("{A: [{x: 1}]}", "ci.yaml:5:18: each value of 'A' in 'matrix' of step 't' must be a"),
        ("{A: [~]}", "ci.yaml:5:18: each value of 'A' in 'matrix' of step 't' must be a string"),
        (
            "{A: [1], exclude: [{B: 1}]}",
            "ci.yaml:5:33: 'exclude' of 'matrix' of step 't' names 'B'",
        ),
        (
            "{SHARD: [1], exclude: [{SHRAD: 1}]}",
            "names 'SHRAD', which is not a name of the matrix (did you mean 'SHARD'?)",
        ),
        (
            "{A: [1], exclude: [{A: 1}]}",
            "ci.yaml:5:5: the matrix of step 't' is empty: 'exclude' leaves",
        ),
        ("{A: [a/b]}", "ci.yaml:5:18: matrix value 'a/b' in 'A' in 'matrix' of step 't' holds '/'"),
        ("{A: [1, 1]}", "ci.yaml:5:21: '1' is listed twice in 'A'"),
        ("{A-B: [1]}", "ci.yaml:5:14: invalid matrix name 'A-B'"),
        ("{A: 1}", "ci.yaml:5:17: 'A' in 'matrix' of step 't' must be a list of values"),
        ("[1]", "ci.yaml:5:13: 'matrix' of step 't' must be a mapping"),
        (
            "{A: [1], include: [{A: 2}, {A: 2}]}",
            "ci.yaml:5:40: this 'include' entry repeats a combination already in the matrix of step 't'",
        ),
        (
            "{A: [1], include: [{}]}",
            "ci.yaml:5:32: each item of 'include' of 'matrix' of step 't' must be a mapping",
        ),
        ("{E: [1]}", "ci.yaml:5:5: matrix name 'E' of step 't' is also in its 'env'"),
    ],
)
def test_a_bad_matrix_is_one_located_error(tmp_path: Path, matrix_text: str, expected: str) -> None:
    text = f"steps:\n  t:\n    env: {{E: x}}\n    matrix: {matrix_text}\n    run: 'true'\n"
    assert expected in spec_error(text, tmp_path)


def test_more_than_256_instances_is_a_located_error(tmp_path: Path) -> None:
    values = ", ".join(str(n) for n in range(17))
    message = spec_error(
        f"steps:\n  t:\n    run: 'true'\n    matrix: {{A: [{values}], B: [{values}]}}\n", tmp_path
    )
    assert message == (
        "ci.yaml:5:5: the matrix of step 't' makes 289 instances; at most 256 are allowed"
        " (as in GitHub Actions)"
    )
    values = ", ".join(str(n) for n in range(16))
    pipeline = load_pipeline(
        spec(
            f"steps:\n  t:\n    run: 'true'\n    matrix: {{A: [{values}], B: [{values}]}}\n",
            tmp_path,
        )
    )
    assert len(pipeline.steps) == 256


def test_two_needs_whose_outputs_overlap_are_a_located_error(tmp_path: Path) -> None:
    base = """
    steps:
      a: {run: "true", outputs: [out]}
      b: {run: "true", outputs: [%s]}
      c: {run: "true", needs: [a, b]}
    """
    assert spec_error(base % "out", tmp_path) == (
        "ci.yaml:6:31: step 'c' needs 'a' and 'b', whose outputs both hand on 'out':"
        " one would overwrite the other; rename one of the outputs"
    )
    assert "hand on 'out/f' inside 'out'" in spec_error(base % "./out/f/", tmp_path)
    load_pipeline(spec(base % "outer", tmp_path))  # a common prefix is not an overlap


def test_matrix_instances_never_collide_but_a_plain_need_can(tmp_path: Path) -> None:
    text = """
    steps:
      t: {run: "true", outputs: [out], matrix: {A: [1, 2]}}
      b: {run: "true", outputs: [%s]}
      c: {run: "true", needs: [t, b]}
    """
    load_pipeline(spec(text % "out", tmp_path))
    assert (
        "needs 't[A=1]' and 'b', whose outputs both hand on 't/A=1/out/x' inside 't/A=1/out'"
        in (spec_error(text % "t/A=1/out/x", tmp_path))
    )
