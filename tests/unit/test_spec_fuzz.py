"""Arbitrary input: a valid pipeline or our one-line, located spec error. Nothing else, no hang."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parapipe.errors import SpecError
from parapipe.model import Pipeline
from parapipe.spec.load import load_pipeline

# Keys the loader knows, so generated documents get past the first checks often enough to
# reach the deeper ones.
WORDS = [
    "name", "image", "from", "build", "context", "dockerfile", "args", "source", "exclude",
    "workdir", "env", "setup", "host_ca", "steps", "run", "needs", "timeout", "retries",
    "retry_on", "allow_failure", "defaults", "tags", "when", "changed", "a", "b", "lint",
    "busybox", "10m", "/src", ".", "", "<<",
]  # fmt: skip

scalars = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=6), inner, max_size=5),
    ),
    max_leaves=30,
)


def load_text(text: str) -> Pipeline | SpecError:
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "ci.yaml"
        spec.write_text(text, encoding="utf-8")
        try:
            return load_pipeline(spec)
        except SpecError as exc:
            return exc


def assert_one_located_line(outcome: Pipeline | SpecError) -> None:
    if isinstance(outcome, SpecError):
        message = str(outcome)
        assert "\n" not in message
        assert outcome.location is not None, message
        assert message.startswith(f"{outcome.location.file}:{outcome.location.line}:")


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents)
def test_any_yaml_document_loads_or_fails_with_a_located_spec_error(document: object) -> None:
    assert_one_located_line(load_text(yaml.safe_dump(document, sort_keys=False)))


@settings(max_examples=300, deadline=2000)
@given(text=st.text(alphabet=st.sampled_from(list("abc:-[]{},&*!|>'\"#\n\t %@`")), max_size=80))
def test_any_text_loads_or_fails_with_a_located_spec_error(text: str) -> None:
    assert_one_located_line(load_text(text))


def test_an_alias_bomb_fails_fast() -> None:
    # Each level repeats the one before nine times: 9**8 leaves if anything expanded it.
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "\n".join(levels) + "\nimage: {from: busybox, setup: *a8}\nsteps: {a: {run: *a8}}\n"
    outcome = load_text(text)
    assert isinstance(outcome, SpecError)
    assert_one_located_line(outcome)
