"""Which files go into the image, and the content hash that names it."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from parapipe.errors import SpecError
from parapipe.model import (
    CA_BUNDLE_PATH,
    CA_ENV_VARS,
    LABEL_PIPELINE,
    ImageSpec,
    Location,
    Pipeline,
    PrepareSpec,
)
from parapipe.run.image_plan import (
    check_prepare_files,
    host_ca_bundle,
    plan_image,
    repository_name,
)
from parapipe.run.source_files import select_source_files
from parapipe.spec.load import load_pipeline
from tests.helpers.git import git

BASE_ID = "sha256:" + "b" * 64
TAG = re.compile(r"parapipe/[a-z0-9]+(?:[._-][a-z0-9]+)*:[0-9a-f]{20}")

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def write(root: Path, files: dict[str, str]) -> None:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


# A tree exercising git's ignore rules; `WANTED` is what should go into the image from `app/`.
TREE = {
    ".gitignore": "*.log\n/top-only.txt\n",
    "top-only.txt": "ignored at the top only\n",
    "app/main.py": "print('hi')\n",
    "app/top-only.txt": "the top .gitignore anchors the pattern to the top\n",
    "app/debug.log": "ignored by the top .gitignore\n",
    "app/.gitignore": "build/\n!keep.log\nsecret.txt\n",
    "app/keep.log": "re-included by the nested .gitignore\n",
    "app/build/out.bin": "ignored folder\n",
    "app/secret.txt": "ignored by the nested .gitignore\n",
    "app/pkg/mod.py": "x = 1\n",
    "app/pkg/notes.tmp": "excluded by image.exclude\n",
    "app/docs/index.md": "excluded folder\n",
    "app/.parapipe/runs/1/step.log": "parapipe's own runs\n",
}
WANTED = [
    ".gitignore",
    "keep.log",
    "link",
    "main.py",
    "pkg/mod.py",
    "top-only.txt",
]
EXCLUDE = ("docs/", "*.tmp")


def make_tree(root: Path) -> Path:
    write(root, TREE)
    (root / "app" / "link").symlink_to("main.py")
    return root / "app"


@needs_git
def test_selection_in_a_git_work_tree(tmp_path: Path) -> None:
    app = make_tree(tmp_path)
    git(tmp_path, "init", "-q")
    write(tmp_path, {"app/gone.py": "committed, then deleted\n"})
    git(tmp_path, "add", "app/main.py", "app/gone.py", ".gitignore")
    git(tmp_path, "commit", "-q", "-m", "init")
    (app / "gone.py").unlink()
    # `pkg/` and `keep.log` are untracked but not ignored: they go in, as `git add .` would.
    assert select_source_files(app, EXCLUDE) == WANTED


@needs_git
def test_selection_ignores_the_environment_of_a_git_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_tree(tmp_path / "project")
    git(tmp_path / "project", "init", "-q")
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    # Hooks run with GIT_DIR set; it must not send `git ls-files` to another repository.
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert select_source_files(app, EXCLUDE) == WANTED


@needs_git
def test_selection_includes_a_nested_repository(tmp_path: Path) -> None:
    write(tmp_path, {"main.py": "", "vendor/lib/.gitignore": "*.o\n", "vendor/lib/lib.c": ""})
    write(tmp_path, {"vendor/lib/lib.o": ""})
    git(tmp_path, "init", "-q")
    git(tmp_path / "vendor" / "lib", "init", "-q")
    assert select_source_files(tmp_path, ()) == [
        "main.py",
        "vendor/lib/.gitignore",
        "vendor/lib/lib.c",
    ]


@needs_git
def test_selection_without_git_reads_the_gitignore_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_tree(tmp_path)
    git(tmp_path, "init", "-q")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # a work tree, but no git to ask
    # The same as git's answer, the top `.gitignore` above `app/` included.
    assert select_source_files(app, EXCLUDE) == WANTED


def test_selection_outside_a_git_work_tree(tmp_path: Path) -> None:
    app = make_tree(tmp_path)
    # `tmp_path` is no git work tree, so `app/`'s rules apply but not the top `.gitignore`.
    top_rules_unapplied = sorted([*WANTED, "debug.log"])
    assert select_source_files(app, EXCLUDE) == top_rules_unapplied


def test_a_folder_ignored_without_git_is_not_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in git, a file inside an ignored folder cannot be re-included.
    write(tmp_path, {".gitignore": "cache/\n!cache/keep\n", "cache/keep": "", "a": ""})
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert select_source_files(tmp_path, ()) == [".gitignore", "a"]


def test_selection_leaves_out_git_data_and_symlinked_folders_stay_links(tmp_path: Path) -> None:
    write(tmp_path, {"real/file": "", ".git/config": "", "sub/.git": "gitdir: elsewhere\n"})
    (tmp_path / "folder-link").symlink_to("real")
    assert select_source_files(tmp_path, ()) == ["folder-link", "real/file"]


def pipeline(source: Path, **image: object) -> Pipeline:
    fields: dict[str, object] = {
        "origin": "busybox:latest",
        "source": source,
        "exclude": (),
        "workdir": "/src",
        "env": {"A": "1"},
        "setup": ("make deps",),
        "host_ca": False,
        "location": Location(file="ci.yaml", line=3, column=1),
    }
    fields.update(image)
    return Pipeline(
        name="My Pipeline!",
        spec_path=source / "ci.yaml",
        project_root=source,
        image=ImageSpec(**fields),  # type: ignore[arg-type]
        steps={},
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write(root, {"main.py": "print('hi')\n", "lib/util.py": "x = 1\n"})
    return root


def test_plan(source: Path) -> None:
    plan = plan_image(pipeline(source), BASE_ID)
    assert TAG.fullmatch(plan.tag), plan.tag
    assert plan.tag.startswith("parapipe/my-pipeline:")
    assert plan.files == ("lib/util.py", "main.py")
    assert plan.base_id == BASE_ID
    assert plan.env == {"A": "1"}
    assert plan.setup == ("make deps",)
    assert plan.labels == {LABEL_PIPELINE: "My Pipeline!"}
    assert plan.ca_bundle is None
    assert plan_image(pipeline(source), BASE_ID).tag == plan.tag  # stable


@pytest.mark.parametrize(
    "change",
    [
        "file content",
        "new file",
        "executable bit",
        "symlink target",
        "env value",
        "setup command",
        "workdir",
        "base id",
    ],
)
def test_the_hash_follows_what_the_image_is_made_of(source: Path, change: str) -> None:
    (source / "link").symlink_to("main.py")
    before = plan_image(pipeline(source), BASE_ID).tag
    image: dict[str, object] = {}
    base_id = BASE_ID
    if change == "file content":
        (source / "main.py").write_text("print('changed')\n")
    elif change == "new file":
        (source / "lib" / "new.py").write_text("")
    elif change == "executable bit":
        (source / "main.py").chmod(0o755)
    elif change == "symlink target":
        (source / "link").unlink()
        (source / "link").symlink_to("lib/util.py")
    elif change == "env value":
        image["env"] = {"A": "2"}
    elif change == "setup command":
        image["setup"] = ("make deps", "make more")
    elif change == "workdir":
        image["workdir"] = "/work"
    elif change == "base id":
        base_id = "sha256:" + "c" * 64
    after = plan_image(pipeline(source, **image), base_id).tag
    assert after != before


def test_the_hash_ignores_what_does_not_reach_the_image(source: Path) -> None:
    before = plan_image(pipeline(source), BASE_ID).tag
    (source / "main.py").touch()  # a new mtime, same content
    (source / ".parapipe").mkdir(exist_ok=True)  # plan_image keeps its digests there
    (source / ".parapipe" / "run.log").write_text("")
    (source / "notes.tmp").write_text("")
    assert plan_image(pipeline(source, exclude=("*.tmp",)), BASE_ID).tag == before


def test_the_hash_does_not_confuse_where_one_value_ends(source: Path) -> None:
    # Without the length prefixes, these two would hash the same bytes.
    one = plan_image(pipeline(source, setup=("ab", "c")), BASE_ID).tag
    two = plan_image(pipeline(source, setup=("a", "bc")), BASE_ID).tag
    assert one != two


def test_host_ca(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\none\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert host_ca_bundle() == bundle

    plan = plan_image(pipeline(source, host_ca=True, env={"PIP_CERT": "/mine.pem"}), BASE_ID)
    assert plan.ca_bundle == bundle
    assert plan.env == {
        **{name: CA_BUNDLE_PATH for name in CA_ENV_VARS},
        "PIP_CERT": "/mine.pem",  # the user's own value wins
    }
    assert plan_image(pipeline(source, host_ca=False), BASE_ID).ca_bundle is None

    bundle.write_text("-----BEGIN CERTIFICATE-----\ntwo\n")
    changed = plan_image(pipeline(source, host_ca=True, env={"PIP_CERT": "/mine.pem"}), BASE_ID)
    assert changed.tag != plan.tag


def test_host_ca_falls_back_to_the_system_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    found = host_ca_bundle()
    assert found is None or found.is_file()
    assert found != tmp_path / "missing.pem"


# What the image's Dockerfile cannot hold is refused as the spec loads, before any engine.


def load_image_spec(folder: Path, image: str) -> Pipeline:
    (folder / "ci.yaml").write_text(f"name: x\n\nimage: {image}\nsteps:\n  a: {{run: 'true'}}\n")
    return load_pipeline(folder / "ci.yaml")


def test_an_env_value_with_a_line_break_is_refused(source: Path) -> None:
    with pytest.raises(SpecError, match="cannot contain a line break") as caught:
        load_image_spec(source, '{from: busybox, env: {KEY: "line one\\nline two"}}')
    assert str(caught.value).endswith(
        "ci.yaml:3:1: 'image.env' KEY: a value baked into the image cannot contain a line"
        " break; set it in the steps' env instead"
    )


def test_a_workdir_with_a_line_break_is_refused(source: Path) -> None:
    with pytest.raises(SpecError, match=r"'image\.workdir' cannot contain a line break") as caught:
        load_image_spec(source, '{from: busybox, workdir: "/src\\nRUN rm -rf /"}')
    assert str(caught.value).endswith("ci.yaml:3:1: 'image.workdir' cannot contain a line break")


def test_a_missing_source_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default source is the project's root, which holds the spec: it can only be missing
    # when the check itself sees the folder gone.
    (tmp_path / "src").mkdir()
    monkeypatch.setattr(Path, "is_dir", lambda self: self.name != "src")
    with pytest.raises(SpecError, match="does not exist") as caught:
        load_image_spec(tmp_path / "src", "{from: busybox}")
    assert str(caught.value).endswith(
        f"ci.yaml:3:1: the image source folder {tmp_path / 'src'} does not exist"
    )
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ci", "ci"),
        ("My Pipeline!", "my-pipeline"),
        ("a__b..c--d", "a-b-c-d"),
        ("web.app_v2", "web.app_v2"),
        ("--", "pipeline"),
        ("ünïcode", "n-code"),
        ("x" * 200, "x" * 64),
    ],
)
def test_repository_name(name: str, expected: str) -> None:
    assert repository_name(name) == expected
    assert re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", repository_name(name))


def test_prepare_matches_its_files_and_changes_the_tag(source: Path) -> None:
    prepare = PrepareSpec(
        files=("lib/**",),
        run=("make deps",),
        env={},
        file_locations=(Location(file="ci.yaml", line=5, column=13),),
    )
    plain = plan_image(pipeline(source), BASE_ID)
    layered = plan_image(pipeline(source, prepare=prepare, caches={"c": "/c"}), BASE_ID)
    assert layered.prepare_files == ("lib/util.py",)
    assert layered.prepare == ("make deps",)
    assert layered.caches == {"c": "/c"}
    assert layered.tag != plain.tag
    (source / "lib/util.py").write_text("x = 2\n")
    assert (
        plan_image(pipeline(source, prepare=prepare, caches={"c": "/c"}), BASE_ID).tag
        != layered.tag
    )


def test_a_prepare_glob_that_matches_nothing_is_located(source: Path) -> None:
    prepare = PrepareSpec(
        files=("lib/**", "requirements*.txt"),
        run=("make deps",),
        env={},
        file_locations=(
            Location(file="ci.yaml", line=5, column=13),
            Location(file="ci.yaml", line=5, column=22),
        ),
    )
    with pytest.raises(SpecError) as caught:
        check_prepare_files(pipeline(source, prepare=prepare))
    assert str(caught.value).startswith(
        "ci.yaml:5:22: 'image.prepare.files' glob 'requirements*.txt' matches no file"
    )


def test_the_tags_of_a_known_tree_stay_what_they_were(tmp_path: Path) -> None:
    """The hash's byte stream is the image's name: a change to how it is computed must not
    change it (that is an IMAGE_FORMAT bump, which rebuilds every user's image)."""
    root = tmp_path / "src"
    write(root, {"main.py": "print('hi')\n", "lib/util.py": "x = 1\n", "run.sh": "#!/bin/sh\n"})
    (root / "run.sh").chmod(0o755)
    (root / "main.py").chmod(0o644)
    (root / "lib" / "util.py").chmod(0o644)
    (root / "link").symlink_to("main.py")
    plan = plan_image(pipeline(root), BASE_ID)
    assert plan.tag == "parapipe/my-pipeline:95549254d980fc9caa84"
    assert plan.source_tag == "parapipe-source/my-pipeline:9094b74ab98a07c546f0"
    assert plan.inputs_label == {
        "io.parapipe.inputs": '{"base":"sha256:' + "b" * 64 + '","ca":"","env":"ad5906aa7ab239da",'
        '"files":"c2f44475bf4cfc86","format":"parapipe-image-v2","name":"My Pipeline!",'
        '"prepare":"9a412847bc7a90cd","setup":"5e371f6da9707773","workdir":"/src"}'
    }


def test_the_prepare_tag_follows_the_prepare_inputs_only(source: Path) -> None:
    prepare = PrepareSpec(
        files=("lib/**",),
        run=("make deps",),
        env={"X": "1"},
        file_locations=(Location(file="ci.yaml", line=5, column=13),),
    )
    assert plan_image(pipeline(source), BASE_ID).prepare_tag == ""  # nothing to commit
    layered = plan_image(pipeline(source, prepare=prepare), BASE_ID)
    assert re.fullmatch(r"parapipe-prepare/my-pipeline:[0-9a-f]{20}", layered.prepare_tag)
    (source / "main.py").write_text("print('edited')\n")  # the source, not a prepare file
    edited = plan_image(pipeline(source, prepare=prepare, setup=("other",)), BASE_ID)
    assert edited.prepare_tag == layered.prepare_tag
    assert edited.source_tag != layered.source_tag
    (source / "lib/util.py").write_text("x = 2\n")  # a prepare file
    assert plan_image(pipeline(source, prepare=prepare), BASE_ID).prepare_tag != (
        layered.prepare_tag
    )
    other_env = dataclasses.replace(prepare, env={"X": "2"})
    (source / "lib/util.py").write_text("x = 1\n")
    assert plan_image(pipeline(source, prepare=other_env), BASE_ID).prepare_tag != (
        layered.prepare_tag
    )
