"""What an image is made of, input by input: the digests `image load` compares, the archive
formats it reads, and its refusal of an image the spec does not plan (in-memory engine)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import anyio
import pytest

from parapipe.engine.docker import archive
from parapipe.engine.docker.dockerfile import dockerfile_text
from parapipe.engine.fake import FakeEngine
from parapipe.errors import UsageError
from parapipe.model import LABEL_INPUTS, Pipeline
from parapipe.run import image_archive, image_inputs
from parapipe.run.image_plan import plan_image
from parapipe.spec.load import load_pipeline

BASE_ID = "sha256:" + "b" * 64
IMAGE = """\
image:
  from: busybox:latest
  env: {A: "1"}
  prepare: {files: [deps.txt], run: [install deps]}
  setup: [make]
"""


def project(tmp_path: Path, image: str = IMAGE) -> Pipeline:
    for name, text in (("deps.txt", "one\n"), ("main.py", "print('hi')\n")):
        if not (tmp_path / name).exists():
            (tmp_path / name).write_text(text)
    spec = tmp_path / "ci.yaml"
    spec.write_text("name: inputs\n" + image + "steps:\n  a: {run: 'true'}\n")
    return load_pipeline(spec)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("base", ["the base image"]),
        ("file", ["the source files"]),
        # deps.txt is one of the source files as well as prepare's.
        (
            "prepare file",
            ["image.prepare and image.caches (commands, env, files)", "the source files"],
        ),
        # Here the spec lies in the source folder: it is one of the source files too.
        ("setup", ["image.setup", "the source files"]),
        ("env", ["image.env (with the host CA variables)", "the source files"]),
    ],
)
def test_a_change_names_its_input(tmp_path: Path, change: str, named: list[str]) -> None:
    before = plan_image(project(tmp_path), BASE_ID)
    base_id = BASE_ID
    image = IMAGE
    if change == "base":
        base_id = "sha256:" + "c" * 64
    elif change == "file":
        (tmp_path / "main.py").write_text("print('changed')\n")
    elif change == "prepare file":
        (tmp_path / "deps.txt").write_text("two\n")
    elif change == "setup":
        image = image.replace("setup: [make]", "setup: [make all]")
    elif change == "env":
        image = image.replace('A: "1"', 'A: "2"')
    after = plan_image(project(tmp_path, image), base_id)
    assert after.tag != before.tag
    differ = image_inputs.differing(after.inputs, before.inputs)
    assert [said.split(" (sha256")[0] for said in differ] == named
    if change == "base":
        assert f"({BASE_ID} in the archive, {base_id} here)" in differ[0]


def test_an_unchanged_plan_differs_in_nothing(tmp_path: Path) -> None:
    first = plan_image(project(tmp_path), BASE_ID)
    again = plan_image(project(tmp_path), BASE_ID)
    assert first.tag == again.tag
    assert image_inputs.differing(again.inputs, dict(first.inputs)) == []
    assert first.inputs["base"] == BASE_ID


def test_the_inputs_label_comes_last_so_the_layer_cache_survives_an_edit(tmp_path: Path) -> None:
    plan = plan_image(project(tmp_path), BASE_ID)
    assert LABEL_INPUTS not in plan.labels  # the first LABEL line stays the same across edits
    lines = dockerfile_text(plan).splitlines()
    assert lines[-1].startswith(f'LABEL "{LABEL_INPUTS}"=')
    assert image_inputs.decode(plan.inputs_label[LABEL_INPUTS]) == dict(plan.inputs)


def test_an_image_without_recorded_inputs(tmp_path: Path) -> None:
    plan = plan_image(project(tmp_path), BASE_ID)
    assert image_inputs.decode("not json") == {}
    assert image_inputs.decode('["a list"]') == {}
    (said,) = image_inputs.differing(plan.inputs, {})
    assert "not recorded" in said


def test_archive_formats_are_read_from_their_first_bytes() -> None:
    assert archive.codec_of(b"\x28\xb5\x2f\xfd rest") is archive.ZSTD
    assert archive.codec_of(b"\x1f\x8b rest") is archive.GZIP
    tar_head = b"\0" * 257 + b"ustar\x0000"
    assert archive.codec_of(tar_head) is archive.NONE
    assert archive.codec_of(b"hello\n") is None


def test_what_load_says_it_loaded() -> None:
    docker = "Loaded image: parapipe/ci:abc\nLoaded image: busybox:latest\n"
    assert archive.loaded_references(docker) == ["parapipe/ci:abc", "busybox:latest"]
    untagged = "Loaded image ID: sha256:0123\n"
    assert archive.loaded_references(untagged) == ["sha256:0123"]
    podman = "Getting image source signatures\nLoaded image(s): localhost/a:1,localhost/b:2\n"
    assert archive.loaded_references(podman) == ["localhost/a:1", "localhost/b:2"]


def test_podman_saves_the_base_as_an_image_of_its_own() -> None:
    argv = archive.save_argv("podman", ["parapipe/ci:abc", "busybox:latest"], ["-m"])
    assert argv == ["podman", "save", "-m", "parapipe/ci:abc", "busybox:latest"]


def saved_by(engine: FakeEngine, pipeline: Pipeline, target: Path) -> None:
    out = io.BytesIO()
    anyio.run(image_archive.save, engine, pipeline, out, lambda _line: None)
    target.write_bytes(out.getvalue())


def test_load_accepts_the_planned_image_and_refuses_another(tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    pipeline = project(here)
    builder = FakeEngine()
    saved = tmp_path / "image.archive"
    saved_by(builder, pipeline, saved)
    assert builder.builds == 1

    runner = FakeEngine()
    runner.images["busybox:latest"] = "sha256:local-busybox"  # there before: it stays
    ready = anyio.run(image_archive.load, runner, pipeline, saved, lambda _line: None)
    assert not ready.built
    assert runner.builds == 0
    assert ready.plan.tag in runner.images

    other = FakeEngine()
    other.images["busybox:latest"] = "sha256:local-busybox"
    (here / "main.py").write_text("print('another checkout')\n")
    with pytest.raises(UsageError, match=r"what differs: the source files; removed what it loaded"):
        anyio.run(image_archive.load, other, load_pipeline(pipeline.spec_path), saved, print)
    assert other.images == {"busybox:latest": "sha256:local-busybox"}  # nothing left to run


def test_load_refuses_the_planned_tag_on_an_image_of_other_inputs(tmp_path: Path) -> None:
    """A tag is only a name: the image under it must record the inputs the tag stands for."""
    here = tmp_path / "here"
    here.mkdir()
    pipeline = project(here)
    saved = tmp_path / "image.archive"
    saved_by(FakeEngine(), pipeline, saved)
    content = json.loads(saved.read_text())
    tag = next(ref for ref in content if ref.startswith("parapipe/"))
    recorded = json.loads(content[tag][1][LABEL_INPUTS])
    content[tag][1][LABEL_INPUTS] = json.dumps({**recorded, "setup": "0" * 16})
    saved.write_text(json.dumps(content))

    runner = FakeEngine()
    with pytest.raises(
        UsageError, match=r"holds parapipe/inputs:\w+, but made from other inputs: image.setup"
    ):
        anyio.run(image_archive.load, runner, pipeline, saved, print)
    assert tag not in runner.images
