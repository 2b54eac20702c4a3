"""The step cache's key and store, without containers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from parapipe.model import ImagePlan, Location, Step
from parapipe.run.state.step_cache import StepCache, parse_size, step_key

HERE = Location(file="ci.yaml", line=1, column=1)


def plan(source: Path, tag: str = "parapipe/p:aaa") -> ImagePlan:
    return ImagePlan(
        tag=tag, base_id="sha256:base", source=source, files=("src/a.py", "docs/x.md"),
        workdir="/src", env={}, setup=("true",), ca_bundle=None, labels={},
    )  # fmt: skip


def key(source: Path, step: Step, **changes: object) -> str:
    arguments: dict[str, object] = {
        "step": step, "plan": plan(source), "workdir": "/src",
        "secret_fingerprints": {}, "received": {},
    }  # fmt: skip
    arguments.update(changes)
    return step_key(**arguments)  # type: ignore[arg-type]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "src" / "a.py").write_text("a = 1\n")
    (tmp_path / "docs" / "x.md").write_text("# x\n")
    return tmp_path


STEP = Step(name="lint", run=("ruff .",), needs=(), env={"A": "1"}, location=HERE)


def test_the_key_changes_with_what_the_step_depends_on(source: Path, tmp_path: Path) -> None:
    base = key(source, STEP)
    assert key(source, STEP) == base
    assert key(source, dataclasses.replace(STEP, run=("ruff check .",))) != base
    assert key(source, dataclasses.replace(STEP, env={"A": "2"})) != base
    assert key(source, STEP, plan=plan(source, tag="parapipe/p:bbb")) != base
    assert key(source, STEP, secret_fingerprints={"TOKEN": "f1"}) != key(
        source, STEP, secret_fingerprints={"TOKEN": "f2"}
    )
    received = tmp_path / "received"
    received.mkdir()
    (received / "out.txt").write_text("1")
    first = key(source, STEP, received={"build": received})
    (received / "out.txt").write_text("2")
    assert key(source, STEP, received={"build": received}) != first


def test_with_inputs_only_the_matched_files_count(source: Path) -> None:
    narrowed = dataclasses.replace(STEP, inputs=("src/**",))
    base = key(source, narrowed)
    assert key(source, narrowed, plan=plan(source, tag="parapipe/p:other-source")) == base
    (source / "docs" / "x.md").write_text("# changed\n")
    assert key(source, narrowed) == base
    (source / "src" / "a.py").write_text("a = 2\n")
    assert key(source, narrowed) != base


def test_store_find_and_prune(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / ".parapipe")
    log = tmp_path / "lint.log"
    log.write_text("all good\n")
    outputs = tmp_path / "out"
    (outputs / "dist").mkdir(parents=True)
    (outputs / "dist" / "w.whl").write_text("wheel")
    cache.store("k1", "p", "lint", 1.5, log, outputs)
    cache.store("k1", "p", "lint", 9.0, log, outputs)  # a second writer of the same key
    entry = cache.find("k1")
    assert entry is not None
    assert entry.duration == 1.5
    assert entry.log.read_text() == "all good\n"
    assert (entry.outputs / "dist" / "w.whl").read_text() == "wheel"
    latest = cache.latest("p", "lint")
    assert latest is not None
    assert latest.key == "k1"
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".building")]
    assert cache.find("missing") is None
    assert cache.prune(10**9) == (0, 0)
    removed, freed = cache.prune(0)
    assert removed == 1
    assert freed > 0
    assert cache.find("k1") is None


@pytest.mark.parametrize(
    ("text", "size"), [("0", 0), ("500M", 500 << 20), ("2G", 2 << 30), ("1.5k", 1536)]
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size
