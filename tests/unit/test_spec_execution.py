"""`timeout`, `retries`, `retry_on` and `allow_failure`, per step and in `defaults`."""

from __future__ import annotations

from pathlib import Path

import pytest

from parapipe.model import Step
from parapipe.spec.load import load_pipeline


def load(tmp_path: Path, text: str) -> dict[str, Step]:
    spec = tmp_path / "ci.yaml"
    spec.write_text(text)
    return dict(load_pipeline(spec).steps)


def test_defaults_apply_to_every_step_unless_it_sets_its_own(tmp_path: Path) -> None:
    steps = load(
        tmp_path,
        """\
defaults: {timeout: 30m, retries: 1, allow_failure: true}
image: {from: busybox}
steps:
  plain: {run: "true"}
  own:
    run: "true"
    timeout: 1h30m
    retries: 3
    retry_on: [1, 137, timeout]
    allow_failure: false
""",
    )
    plain, own = steps["plain"], steps["own"]
    assert (plain.timeout, plain.retries, plain.allow_failure) == (1800, 1, True)
    assert plain.retry_on is None
    assert plain.retry_on_timeout
    assert (own.timeout, own.retries, own.allow_failure) == (5400, 3, False)
    assert own.retry_on == frozenset({1, 137})
    assert own.retry_on_timeout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("500ms", 0.5), ("1m30s", 90), ("1.5h", 5400)],
)
def test_durations(tmp_path: Path, text: str, seconds: float) -> None:
    steps = load(tmp_path, f"image: {{from: busybox}}\nsteps:\n  a: {{run: x, timeout: {text}}}\n")
    assert steps["a"].timeout == seconds


def test_retry_on_exit_codes_only_excludes_timeouts(tmp_path: Path) -> None:
    steps = load(
        tmp_path, "image: {from: busybox}\nsteps:\n  a: {run: x, retries: 2, retry_on: 75}\n"
    )
    assert steps["a"].retry_on == frozenset({75})
    assert not steps["a"].retry_on_timeout
