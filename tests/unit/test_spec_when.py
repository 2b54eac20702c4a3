"""`tags` and `when: {changed: [...]}` on a step: read into the model, or one error at its node."""

from __future__ import annotations

from pathlib import Path

import pytest

from parapipe.errors import SpecError
from parapipe.spec.load import NOT_SUPPORTED_YET, load_pipeline

HEAD = "image: {from: busybox:latest}\nsteps:\n"


def load(tmp_path: Path, steps: str) -> Path:
    spec = tmp_path / "ci.yaml"
    spec.write_text(HEAD + steps)
    return spec


def error(tmp_path: Path, steps: str) -> str:
    with pytest.raises(SpecError) as info:
        load_pipeline(load(tmp_path, steps))
    location = info.value.location
    assert location is not None
    return f"{location.line}:{location.column}: {info.value.message}"


def test_tags_and_when_become_the_steps_fields(tmp_path: Path) -> None:
    pipeline = load_pipeline(
        load(
            tmp_path,
            "  lint: {run: ruff check ., tags: [pre-push, fast]}\n"
            "  docs:\n"
            "    run: make docs\n"
            "    tags: pre-push\n"
            "    when:\n"
            "      changed: [docs/**, '*.md', '!docs/drafts/**']\n"
            "  one: {run: x, when: {changed: src/**}}\n"
            "  plain: {run: x}\n",
        )
    )
    steps = pipeline.steps
    assert steps["lint"].tags == ("pre-push", "fast")
    assert steps["lint"].when_changed is None
    assert steps["docs"].tags == ("pre-push",)
    assert steps["docs"].when_changed == ("docs/**", "*.md", "!docs/drafts/**")
    assert steps["one"].when_changed == ("src/**",)
    assert steps["plain"].tags == ()
    assert steps["plain"].when_changed is None


def test_tags_and_when_are_no_longer_refused_as_not_supported_yet() -> None:
    assert "tags" not in NOT_SUPPORTED_YET["step"]
    assert "when" not in NOT_SUPPORTED_YET["step"]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ("  a: {run: x, tags: 3}\n", "3:21: 'tags' of step 'a' must be a string or a list"),
        ("  a: {run: x, tags: [ok, 'has space']}\n", "3:26: invalid tag 'has space'"),
        ("  a: {run: x, tags: [x, x]}\n", "3:25: 'x' is listed twice in 'tags' of step 'a'"),
        ("  a: {run: x, when: docs/**}\n", "3:21: 'when' of step 'a' must be a mapping"),
        ("  a: {run: x, when: {}}\n", "3:21: 'when' of step 'a' is empty"),
        (
            "  a: {run: x, when: {changes: [a]}}\n",
            "3:22: unknown key 'changes' in 'when' of step 'a' (did you mean 'changed'?)",
        ),
        (
            "  a: {run: x, when: {changed: []}}\n",
            "3:31: 'when.changed' of step 'a' must not be empty",
        ),
        (
            "  a: {run: x, when: {changed: [/abs/**]}}\n",
            "3:32: glob '/abs/**' in 'when.changed' of step 'a' must be relative",
        ),
        (
            "  a: {run: x, when: {changed: [../up]}}\n",
            "3:32: glob '../up' in 'when.changed' of step 'a' must not leave",
        ),
        (
            "  a: {run: x, when: {changed: ['[ab']}}\n",
            "3:32: glob '[ab' in 'when.changed' of step 'a' is not a valid glob",
        ),
        (
            "  a: {run: x, when: {changed: ['!x']}}\n",
            "3:31: 'when.changed' of step 'a' only takes files back",
        ),
        (
            "  a: {run: x, when: {changed: [1]}}\n",
            "3:32: 'when.changed' of step 'a' must be a string or a list",
        ),
    ],
)
def test_bad_tags_and_when_point_at_the_node(tmp_path: Path, steps: str, expected: str) -> None:
    assert error(tmp_path, steps).startswith(expected)
