"""The digest cache (files read again only when their stat says so, racy git included), the
delta between two source stages, and old source stages pruned beside the pipeline images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from parapipe.engine.docker import stages
from parapipe.engine.docker.old_images import ListedImage, images_to_remove
from parapipe.model import ImagePlan, SourceDelta
from parapipe.run.image_plan import SourceManifest
from parapipe.run.source_delta import MAX_REMOVED_CHARS, compute_delta
from parapipe.run.state.digests import DigestCache
from parapipe.run.state.source_images import SourceImages, SourceRecord

OLD_NS = 1_000_000_000_000_000_000  # 2001: well before any cache written by the test


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("one")
    os.utime(source / "a.txt", ns=(OLD_NS, OLD_NS))
    return source


def digest_twice(tree: Path, state: Path, change: object = None) -> tuple[str, str, int]:
    """Digest a.txt with a fresh cache, save it, let `change` act, and digest it again."""
    first = DigestCache(state, tree)
    before = first.digest(tree / "a.txt", "a.txt", (tree / "a.txt").lstat())
    first.save()
    if callable(change):
        change()
    second = DigestCache(state, tree)
    after = second.digest(tree / "a.txt", "a.txt", (tree / "a.txt").lstat())
    return before, after, second.hashed


def test_an_unchanged_file_is_not_read_again(tree: Path, tmp_path: Path) -> None:
    before, after, hashed = digest_twice(tree, tmp_path / "state")
    assert before == after
    assert hashed == 0


def test_a_file_as_new_as_the_cache_is_read_again(tree: Path, tmp_path: Path) -> None:
    # Racy git: written in the cache's own clock tick, it could change without its mtime
    # moving, so its entry is not trusted.
    state = tmp_path / "state"

    def same_tick_as_the_cache() -> None:
        # The cache's clock moved back to the file's (a.txt keeps the stat the cache knows).
        os.utime(next((state / "digests").iterdir()), ns=(OLD_NS, OLD_NS))

    _, _, hashed = digest_twice(tree, state, same_tick_as_the_cache)
    assert hashed == 1


def test_a_size_change_is_read_again_even_with_the_old_mtime(tree: Path, tmp_path: Path) -> None:
    def grow() -> None:
        (tree / "a.txt").write_text("one more")
        os.utime(tree / "a.txt", ns=(OLD_NS, OLD_NS))

    before, after, hashed = digest_twice(tree, tmp_path / "state", grow)
    assert (hashed, before != after) == (1, True)


def test_a_replaced_file_is_read_again(tree: Path, tmp_path: Path) -> None:
    # Same size and mtime, another inode: `mv new a.txt` as editors save.
    def replace() -> None:
        (tree / "b.txt").write_text("two")
        os.utime(tree / "b.txt", ns=(OLD_NS, OLD_NS))
        (tree / "b.txt").replace(tree / "a.txt")

    before, after, hashed = digest_twice(tree, tmp_path / "state", replace)
    assert (hashed, before != after) == (1, True)


def test_an_unreadable_cache_is_an_empty_one(tree: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    digest_twice(tree, state)
    for written in (state / "digests").iterdir():
        written.write_text("{not json")
    cache = DigestCache(state, tree)
    cache.digest(tree / "a.txt", "a.txt", (tree / "a.txt").lstat())
    assert cache.hashed == 1


def manifest(files: dict[str, tuple[str, str, int]]) -> SourceManifest:
    return SourceManifest(stage="s", files=files)


BIG = {f"lib/m{n}.py": ("file", f"d{n}", 100) for n in range(20)}


def test_a_delta_holds_the_changed_and_deletes_the_removed() -> None:
    previous = {**BIG, "old/gone.txt": ("file", "x", 1), "tool": ("file", "t", 10)}
    now = {**BIG, "lib/m0.py": ("file", "new", 100), "added.txt": ("file", "a", 5)}
    now["tool"] = ("executable", "t", 10)  # chmod +x: deleted, then copied with its mode
    delta, reason = compute_delta("prev:1", previous, manifest(now))
    assert reason == ""
    assert delta is not None
    assert sorted(delta.changed) == ["added.txt", "lib/m0.py", "tool"]
    assert delta.removed == ("old/gone.txt", "tool")
    assert delta.emptied == ("old",)  # only the removed file held it


def test_folders_go_deepest_first_and_only_when_nothing_new_is_in_them() -> None:
    previous = {**BIG, "a/b/c.txt": ("file", "x", 1), "a/keep.txt": ("file", "k", 1)}
    now = {**BIG, "a/keep.txt": ("file", "k", 1)}
    delta, _ = compute_delta("prev:1", previous, manifest(now))
    assert delta is not None
    assert delta.emptied == ("a/b",)
    delta, _ = compute_delta("prev:1", {**previous, "x/y/z": ("file", "z", 1)}, manifest(now))
    assert delta is not None
    assert delta.emptied == ("a/b", "x/y", "x")


def test_a_large_delta_is_a_full_copy() -> None:
    now = {**BIG, **{f"lib/m{n}.py": ("file", "new", 100) for n in range(6)}}  # 30 %
    delta, reason = compute_delta("prev:1", BIG, manifest(now))
    assert delta is None
    assert "more than 25% of the source" in reason


def test_many_deletions_are_a_full_copy() -> None:
    previous = {**BIG, **{f"gone/{n:06d}": ("file", "x", 0) for n in range(MAX_REMOVED_CHARS)}}
    delta, reason = compute_delta("prev:1", previous, manifest(BIG))
    assert delta is None
    assert "files to delete" in reason


def test_remembered_stages_are_newest_first_and_bounded(tmp_path: Path) -> None:
    store = SourceImages(tmp_path, "docker")
    for number in range(12):
        store.remember(
            SourceRecord(f"parapipe-source/p:{number}", "s", number), {"f": ("file", "d", 1)}
        )
    records = store.records()
    assert [r.tag for r in records[:2]] == ["parapipe-source/p:11", "parapipe-source/p:10"]
    assert len(records) == 8
    assert len(list(store.folder.glob("*.json"))) == 8 + 1  # their manifests and the index
    assert store.files(records[0]) == {"f": ("file", "d", 1)}


def test_source_stages_are_kept_apart_from_pipeline_images() -> None:
    def listed(repository: str, number: int) -> ListedImage:
        return ListedImage(f"sha256:{repository[:1]}{number:063d}", f"{repository}:{number}")

    # Newest first, interleaved as the builds made them: each kind keeps its newest two.
    images = [
        listed(repository, number)
        for number in (3, 2, 1)
        for repository in ("parapipe/p", "parapipe-source/p")
    ]
    doomed = images_to_remove(images, keep=2, keep_ids=frozenset(), in_use=frozenset())
    assert doomed == ["parapipe/p:1", "parapipe-source/p:1"]


def stage_plan(**overrides: object) -> ImagePlan:
    values: dict[str, object] = {
        "tag": "parapipe/p:final",
        "base_id": "sha256:" + "b" * 64,
        "source": Path("/src"),
        "files": ("a.txt",),
        "workdir": "/src",
        "env": {},
        "setup": ("make",),
        "ca_bundle": None,
        "labels": {"io.parapipe.pipeline": "p"},
        "source_tag": "parapipe-source/p:abc",
    }
    return ImagePlan(**(values | overrides))  # type: ignore[arg-type]


def test_the_delta_dockerfile_deletes_then_copies_and_labels_as_a_full_copy_does() -> None:
    delta = SourceDelta(
        previous="parapipe-source/p:old",
        changed=("a.txt",),
        removed=("-odd name", "gone/x"),
        emptied=("gone",),
    )
    text = stages.delta_dockerfile(stage_plan(delta=delta))
    lines = text.splitlines()
    assert lines[1] == "FROM parapipe-source/p:old"
    run = json.loads(lines[2].removeprefix("RUN "))
    assert run[3:] == ["parapipe-delta", "2", "-odd name", "gone/x", "gone"]
    assert lines[3] == 'COPY ["delta/", "./"]'
    label = 'LABEL io.parapipe.source="abc"'
    assert lines[4] == label
    assert stages.source_dockerfile(stage_plan(), cache_mounts=False).endswith(label + "\n")
    setup = stages.setup_dockerfile(stage_plan(), cache_mounts=False).splitlines()
    assert setup[1] == "FROM parapipe-source/p:abc"
    assert "make" in setup[2]


def test_a_hard_link_made_and_removed_reads_nothing_again(tree: Path, tmp_path: Path) -> None:
    # As the build context does: the link moves the file's ctime, not its content.
    def link_and_unlink() -> None:
        os.link(tree / "a.txt", tmp_path / "linked")
        (tmp_path / "linked").unlink()

    _, _, hashed = digest_twice(tree, tmp_path / "state", link_and_unlink)
    assert hashed == 0
