"""The remembered plan: an unchanged source names its image without reading a file, and
anything a plan reads that changed (a file's stat, the spec, the base) makes a full plan."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from parapipe.errors import ImageBuildFailed
from parapipe.model import ImagePlan, Pipeline
from parapipe.run import image_plan
from parapipe.run.image_plan import list_source, list_source_soon, plan_image_and_source
from parapipe.run.image_plan import remembered_plan as remembered_with
from tests.unit.test_image import BASE_ID, pipeline, write

OLD_NS = 1_000_000_000_000_000_000  # 2001: older than any memo the test writes


def remembered_plan(spec: Pipeline, base_id: str) -> tuple[ImagePlan | None, None]:
    return remembered_with(spec, base_id, list_source(spec)), None


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write(root, {"main.py": "print('hi')\n", "lib/util.py": "x = 1\n"})
    for path in (root / "main.py", root / "lib" / "util.py"):
        os.utime(path, ns=(OLD_NS, OLD_NS))
    return root


def test_an_unchanged_source_gets_the_full_plan_without_reading_a_file(
    source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full, _ = plan_image_and_source(pipeline(source), BASE_ID)

    def no_digests(*_: object) -> None:
        raise AssertionError("a remembered plan reads no digest")

    monkeypatch.setattr(image_plan, "DigestCache", no_digests)
    remembered, _ = remembered_plan(pipeline(source), BASE_ID)
    assert remembered == full


def test_nothing_is_remembered_before_a_full_plan(source: Path) -> None:
    assert remembered_plan(pipeline(source), BASE_ID)[0] is None


def edit_content(source: Path) -> None:
    (source / "main.py").write_text("print('bye')\n")
    os.utime(source / "main.py", ns=(OLD_NS, OLD_NS))  # the size says it changed


def add_file(source: Path) -> None:
    write(source, {"new.py": ""})
    os.utime(source / "new.py", ns=(OLD_NS, OLD_NS))


def chmod(source: Path) -> None:
    (source / "main.py").chmod(0o755)


@pytest.mark.parametrize("change", [edit_content, add_file, chmod])
def test_a_changed_file_makes_a_full_plan(source: Path, change: object) -> None:
    before, _ = plan_image_and_source(pipeline(source), BASE_ID)
    assert callable(change)
    change(source)
    assert remembered_plan(pipeline(source), BASE_ID)[0] is None
    after, _ = plan_image_and_source(pipeline(source), BASE_ID)
    assert after.tag != before.tag
    assert remembered_plan(pipeline(source), BASE_ID)[0] == after


def test_a_file_as_new_as_the_memo_is_not_trusted(source: Path) -> None:
    # Racy git: a file written in the memo's own clock tick could change again without its
    # stat moving.
    plan_image_and_source(pipeline(source), BASE_ID)
    assert remembered_plan(pipeline(source), BASE_ID)[0] is not None
    # The memo's clock moved back to the files' (the files keep the stat the memo knows).
    memo = next((source / ".parapipe" / "digests").glob("plan-*.json"))
    os.utime(memo, ns=(OLD_NS, OLD_NS))
    assert remembered_plan(pipeline(source), BASE_ID)[0] is None


def test_the_spec_and_the_base_are_part_of_what_is_remembered(source: Path) -> None:
    plan_image_and_source(pipeline(source), BASE_ID)
    assert remembered_plan(pipeline(source, setup=("make other",)), BASE_ID)[0] is None
    assert remembered_plan(pipeline(source), "sha256:" + "c" * 64)[0] is None
    assert remembered_plan(pipeline(source), BASE_ID)[0] is not None


def test_an_unreadable_memo_is_none(source: Path) -> None:
    plan_image_and_source(pipeline(source), BASE_ID)
    memo = next((source / ".parapipe" / "digests").glob("plan-*.json"))
    memo.write_text('{"format": 1, "signature": 3, "plan": []}')
    os.utime(memo, ns=(OLD_NS * 2, OLD_NS * 2))
    assert remembered_plan(pipeline(source), BASE_ID)[0] is None
    memo.write_text("{not json")
    os.utime(memo, ns=(OLD_NS * 2, OLD_NS * 2))
    assert remembered_plan(pipeline(source), BASE_ID)[0] is None


def test_a_remembered_plan_keeps_prepare_and_inputs(source: Path) -> None:
    from parapipe.model import Location, PrepareSpec

    prepare = PrepareSpec(
        files=("lib/*.py",),
        run=("pip install .",),
        env={"X": "1"},
        file_locations=(Location(file="ci.yaml", line=4, column=5),),
    )
    spec = pipeline(source, prepare=prepare, caches={"pip": "/root/.cache/pip"})
    full, _ = plan_image_and_source(spec, BASE_ID)
    remembered, _ = remembered_plan(spec, BASE_ID)
    assert remembered == full
    assert remembered is not None
    assert dataclasses.asdict(remembered)["prepare_files"] == ("lib/util.py",)


def test_a_listing_started_ahead_gives_the_same_plan(source: Path) -> None:
    spec = pipeline(source)
    full, _ = plan_image_and_source(spec, BASE_ID)
    ahead = list_source_soon(spec).result(timeout=30)
    assert ahead == list_source(spec)
    assert remembered_with(spec, BASE_ID, ahead) == full
    assert plan_image_and_source(spec, BASE_ID, ahead)[0] == full


def test_a_listing_that_fails_ahead_fails_when_taken(
    source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(*_: object) -> list[str]:
        raise ImageBuildFailed("cannot read src/x for the image: Permission denied")

    monkeypatch.setattr(image_plan, "select_source_files", unreadable)
    listing = list_source_soon(pipeline(source))
    with pytest.raises(ImageBuildFailed, match="cannot read src/x"):
        listing.result(timeout=30)


def test_a_hard_link_made_and_removed_changes_nothing(source: Path, tmp_path: Path) -> None:
    # The build context hard-links the source files, which moves their ctime: a build must not
    # make the next run read every file again.
    full, _ = plan_image_and_source(pipeline(source), BASE_ID)
    os.link(source / "main.py", tmp_path / "linked")
    (tmp_path / "linked").unlink()
    assert remembered_plan(pipeline(source), BASE_ID)[0] == full
