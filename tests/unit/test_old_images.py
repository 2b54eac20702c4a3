"""Which old pipeline images go: the choice made from a listing, `image.keep` in the spec, and
the run asking for it after a build only."""

from __future__ import annotations

from pathlib import Path

import pytest

from parapipe.engine.docker.old_images import (
    UNTAGGED,
    ListedImage,
    images_to_remove,
    list_images_argv,
    parse_images,
)
from parapipe.engine.fake import FakeEngine
from parapipe.errors import SpecError
from parapipe.model import Status
from parapipe.reporters.base import Reporter
from parapipe.run.pipeline_run import RunOptions, run_pipeline
from parapipe.spec.load import load_pipeline

HEX = "0123456789abcdef" * 4


def image(number: int, reference: str = "") -> ListedImage:
    return ListedImage(f"sha256:{number:064d}", reference or f"parapipe/p:{number}")


def test_the_newest_stay_and_the_rest_go_by_tag() -> None:
    listed = [image(5), image(4), image(3), image(2), image(1)]  # newest first
    doomed = images_to_remove(listed, keep=3, keep_ids=frozenset(), in_use=frozenset())
    assert doomed == ["parapipe/p:2", "parapipe/p:1"]


def test_the_image_the_run_uses_stays_however_old() -> None:
    listed = [image(5), image(4), image(3), image(2), image(1)]
    keep_ids = frozenset({image(1).image_id})  # a revert: the oldest image again
    doomed = images_to_remove(listed, keep=2, keep_ids=keep_ids, in_use=frozenset())
    assert doomed == ["parapipe/p:4", "parapipe/p:3", "parapipe/p:2"]


def test_an_image_a_container_uses_stays_beyond_the_limit() -> None:
    listed = [image(3), image(2), image(1)]
    in_use = frozenset({image(1).image_id})
    assert images_to_remove(listed, keep=1, keep_ids=frozenset(), in_use=in_use) == ["parapipe/p:2"]


def test_untagged_images_go_by_id_and_do_not_count_towards_the_limit() -> None:
    failed = image(9, UNTAGGED)
    listed = [failed, image(2), image(1)]
    doomed = images_to_remove(listed, keep=2, keep_ids=frozenset(), in_use=frozenset())
    assert doomed == [failed.image_id]


def test_an_image_with_two_tags_counts_once_and_loses_both() -> None:
    listed = [image(3), image(2), image(2, "parapipe/p:again"), image(1)]
    doomed = images_to_remove(listed, keep=1, keep_ids=frozenset(), in_use=frozenset())
    assert doomed == ["parapipe/p:2", "parapipe/p:again", "parapipe/p:1"]


def test_listings_of_both_engines_parse_to_one_id_form() -> None:
    docker = f"sha256:{HEX}\tparapipe/p:abc\nsha256:{HEX}\t<none>:<none>\n"
    podman = f"{HEX}\tlocalhost/parapipe/p:abc\n"
    assert parse_images(docker) == [
        ListedImage(f"sha256:{HEX}", "parapipe/p:abc"),
        ListedImage(f"sha256:{HEX}", UNTAGGED),
    ]
    assert parse_images(podman) == [ListedImage(f"sha256:{HEX}", "localhost/parapipe/p:abc")]


def test_only_the_pipelines_own_label_is_listed() -> None:
    argv = list_images_argv("docker", "my-pipe")
    assert argv[argv.index("--filter") + 1] == "label=io.parapipe.pipeline=my-pipe"


SPEC = """\
name: fake
image:
  from: busybox:latest
{keep}steps:
  a: {{run: echo a}}
"""


def write_spec(tmp_path: Path, keep: str = "") -> Path:
    path = tmp_path / "ci.yaml"
    path.write_text(SPEC.format(keep=keep))
    return path


def test_image_keep_defaults_to_3_and_can_be_set(tmp_path: Path) -> None:
    assert load_pipeline(write_spec(tmp_path)).image.keep == 3
    assert load_pipeline(write_spec(tmp_path, "  keep: 5\n")).image.keep == 5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "ci.yaml:4:9: 'image.keep' must be between 1 and 1000, not 0"),
        ("three", "ci.yaml:4:9: 'image.keep' must be a whole number, not a string"),
    ],
)
def test_a_bad_image_keep_is_located(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        load_pipeline(write_spec(tmp_path, f"  keep: {value}\n"))
    assert str(raised.value).endswith(message)


@pytest.mark.anyio
async def test_a_build_removes_old_images_and_a_reused_image_does_not(tmp_path: Path) -> None:
    pipeline = load_pipeline(write_spec(tmp_path, "  keep: 2\n"))
    engine = FakeEngine()
    first = await run_pipeline(pipeline, RunOptions(), [Reporter()], engine=engine)
    assert first.image is not None
    assert first.image.status is Status.PASSED
    assert engine.pruned == [("fake", 2, frozenset({first.image.image_id}))]
    await run_pipeline(pipeline, RunOptions(no_cache=True), [Reporter()], engine=engine)
    assert len(engine.pruned) == 1  # the same image again: nothing new to make room for
