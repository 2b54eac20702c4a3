"""Benchmark the edit -> re-run loop: how long `parapipe run` takes cold, unchanged, after a
one-file source edit and (for the library) after a dependency-file edit, beside the same
commands run bare on the host.

Projects (each made in a temporary folder, a git repository, removed afterwards)
  lib   a small Python library: a package importing `requests`, a pytest suite in 4 files.
        7 steps: ruff check, ruff format --check, mypy, pytest on each test file. The image is
        the README's: `prepare` makes /venv and pip-installs the dependencies named in
        pyproject.toml (from PyPI, through the host CA), `setup` installs the package with
        `--no-deps -e .`, `caches: {pip: /root/.cache/pip}`. The dependency edit bumps
        the version in pyproject.toml (a `prepare` file). Host floor: the 7 commands one after
        another with the venv parapipe itself is installed in (made once).
  self  parapipe's own repository (a clone of HEAD) with its pipelines/ci.yaml, renamed so its
        images are the benchmark's own; only the steps `lint` and `format` run (the image
        is the point; mypy and the unit tests take minutes on 2 shared cores). Host floor:
        `ruff check .` and `ruff format --check .`.
  big   20,000 small files in 200 folders plus one 300 MB file of random bytes (about 380 MB),
        image `busybox:latest` with no setup, one step `ls src | wc -l`. Host floor: `tar`
        of the tree to /dev/null, what a full copy costs at least.

For each project and repetition, in this order: a cold run (the pipeline's images, build
cache mounts and state folder removed first), an unchanged re-run, a one-file source edit
re-run, and for lib a dependency-file edit re-run. parapipe runs in its default configuration
(no --no-cache); the image seconds are the ones parapipe reports for its image ("built ... in
Xs"), the rest of the wall time is the steps and parapipe itself. Median of --repeat.

Usage
  python benchmarks/edit_loop.py                         # lib, self, big; 3 repetitions
  python benchmarks/edit_loop.py --projects big --repeat 1

Every image, BuildKit cache record and temporary folder the script made is removed at the end,
also after a failure or Ctrl-C. A run that fails is said and left out of the medians; the exit
status is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
PARAPIPE = [sys.executable, "-m", "parapipe"]
HOST_BIN = Path(sys.executable).parent  # the venv parapipe runs from: ruff, mypy, pytest
VERBOSE = bool(os.environ.get("EDIT_LOOP_VERBOSE"))  # every run's output tail on stderr
IMAGE_LINE = re.compile(r"^image: (built|reused) (\S+)(?: in ([\d.]+)s)?", re.MULTILINE)

LIB_SPEC = """\
name: {name}
image:
  from: parapipe-seed/python3:bookworm
  env:
    PATH: /venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    PIP_DISABLE_PIP_VERSION_CHECK: "1"
  prepare:
    files: [pyproject.toml]
    run:
      - python3 -m venv /venv
      - >-
        pip install -q setuptools wheel ruff mypy pytest $(python3 -c "import tomllib;
        print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))")
        ; : {name}
  setup: [pip install -q --no-deps --no-build-isolation -e .]
  caches: {{pip: /root/.cache/pip}}
steps:
  lint: {{run: ruff check .}}
  format: {{run: ruff format --check .}}
  types: {{run: mypy src}}
{tests}
"""
LIB_COMMANDS = [
    "ruff check .",
    "ruff format --check .",
    "mypy src",
    *(f"pytest -q -p no:cacheprovider tests/test_part{n}.py" for n in range(1, 5)),
]
BIG_SPEC = """\
name: {name}
image:
  from: busybox:latest
steps:
  count: {{run: ls src | wc -l}}
"""


@dataclass
class Project:
    key: str
    name: str  # the pipeline's: every image it makes is labelled with it
    root: Path
    spec: str  # relative to root
    steps: list[str]
    floor: list[str]  # shell commands run bare, in root, one after another
    edit_source: Callable[[int], None]
    edit_deps: Callable[[int], None] | None = None
    timings: dict[str, list[float]] = field(default_factory=dict)

    def note(self, what: str, seconds: float | None) -> None:
        if seconds is not None:
            self.timings.setdefault(what, []).append(seconds)


def sh(
    argv: Sequence[str], cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    # Python writes and reuses bytecode, as on a user's machine: some sandboxes set
    # PYTHONDONTWRITEBYTECODE, which would compile parapipe again on every run (about 0.1 s).
    base = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, env={**base, **env}
    )


def git_commit_all(root: Path) -> None:
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        done = sh(argv, root, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
                  GIT_COMMITTER_EMAIL="b@b")  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"git {argv[1]} failed in {root}: {done.stderr.strip()}")


def make_lib(root: Path, name: str) -> Project:
    package = root / "src" / "minilib"
    package.mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "minilib"\nversion = "0.1.0"\ndependencies = ["requests"]\n\n'
        "[tool.mypy]\nignore_missing_imports = true\n"
    )
    (package / "__init__.py").write_text('"""A small library."""\n')
    (package / "core.py").write_text(
        '"""Text helpers."""\n\nimport requests\n\n\n'
        "def slug(text: str) -> str:\n"
        '    return "-".join(text.lower().split())\n\n\n'
        "def status(url: str) -> int:\n"
        "    return requests.head(url, timeout=5).status_code\n"
    )
    for part in range(1, 5):
        cases = "\n\n\n".join(
            f'def test_slug_{part}_{n}() -> None:\n    assert slug("A b {n}") == "a-b-{n}"'
            for n in range(25)
        )
        (root / "tests" / f"test_part{part}.py").write_text(
            f"from minilib.core import slug\n\n\n{cases}\n"
        )
    tests = "\n".join(
        f"  test{n}: {{run: pytest -q -p no:cacheprovider tests/test_part{n}.py}}"
        for n in range(1, 5)
    )
    (root / "ci.yaml").write_text(LIB_SPEC.format(name=name, tests=tests))
    git_commit_all(root)
    bin_dir = HOST_BIN

    def edit_source(number: int) -> None:
        with (package / "core.py").open("a") as core:
            core.write(f"\n\nEDIT_{number} = {number}\n")

    def edit_deps(number: int) -> None:
        text = (root / "pyproject.toml").read_text()
        (root / "pyproject.toml").write_text(
            re.sub(r'version = "[^"]*"', f'version = "0.1.{number + 1}"', text)
        )

    floor = [f"PYTHONPATH=src {bin_dir}/{command}" for command in LIB_COMMANDS]
    return Project("lib", name, root, "ci.yaml", [], floor, edit_source, edit_deps)


def make_self(root: Path, name: str) -> Project:
    shutil.rmtree(root)
    done = sh(["git", "clone", "-q", str(REPOSITORY), str(root)])
    if done.returncode != 0:
        raise SystemExit(f"cannot clone {REPOSITORY}: {done.stderr.strip()}")
    spec = root / "pipelines" / "ci.yaml"
    text = re.sub(r"^name: .*$", f"name: {name}", spec.read_text(), flags=re.M)
    # A marker in the prepare command, for `remove_build_cache`.
    text = text.replace("rm /tmp/deps.txt", f"rm /tmp/deps.txt; true {name}")
    spec.write_text(text)
    target = root / "src" / "parapipe" / "globs.py"

    def edit_source(number: int) -> None:
        with target.open("a") as module:
            module.write(f"\n\nEDIT_{number} = {number}\n")  # as `ruff format` writes it

    floor = [f"{HOST_BIN}/ruff check .", f"{HOST_BIN}/ruff format --check ."]
    return Project("self", name, root, "pipelines/ci.yaml", ["lint", "format"], floor, edit_source)


def make_big(root: Path, name: str) -> Project:
    for folder in range(200):
        (root / "src" / f"d{folder:03d}").mkdir(parents=True)
        for number in range(100):
            path = root / "src" / f"d{folder:03d}" / f"f{number:03d}.txt"
            path.write_text(f"file {folder} {number}\n" * 20)
    with (root / "blob.bin").open("wb") as blob:
        for _ in range(300):
            blob.write(os.urandom(1024 * 1024))
    (root / "ci.yaml").write_text(BIG_SPEC.format(name=name))
    git_commit_all(root)

    def edit_source(number: int) -> None:
        with (root / "src" / "d001" / "f001.txt").open("a") as small:
            small.write(f"edit {number}\n")

    floor = ["tar --exclude=./.git --exclude=./.parapipe -cf - . > /dev/null"]
    return Project("big", name, root, "ci.yaml", [], floor, edit_source)


MAKERS = {"lib": make_lib, "self": make_self, "big": make_big}


def run_parapipe(project: Project) -> tuple[float, float | None]:
    """One `parapipe run`; (wall seconds, image seconds or None when the image was reused)."""
    argv = [*PARAPIPE, "run", "-f", project.spec, "--output", "plain", *project.steps]
    started = time.perf_counter()
    done = sh(argv, project.root, NO_COLOR="1")
    wall = time.perf_counter() - started
    if VERBOSE:
        print(f"--- {project.key}: {wall:.2f}s\n{done.stdout[-1500:]}", file=sys.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{project.key}: parapipe run failed:\n{done.stdout[-3000:]}{done.stderr}")
    found = IMAGE_LINE.search(done.stdout)
    image = float(found.group(3)) if found and found.group(3) else (0.0 if found else None)
    return wall, image


def run_floor(project: Project) -> float:
    started = time.perf_counter()
    for command in project.floor:
        done = sh(["sh", "-c", command], project.root)
        if done.returncode != 0:
            raise SystemExit(f"{project.key}: `{command}` failed: {done.stdout}{done.stderr}")
    return time.perf_counter() - started


def remove_images(name: str) -> None:
    """Every image labelled with the pipeline; source stages (parents) go once their children
    went, so what is left is tried again."""
    for _ in range(12):
        listed = sh(["docker", "images", "-aq", "--filter", f"label=io.parapipe.pipeline={name}"])
        ids = sorted(set(listed.stdout.split()))
        if not ids:
            return
        sh(["docker", "image", "rm", "-f", *ids])


def remove_build_cache(marker: str) -> None:
    """BuildKit's cache of the pipeline: its layers and its `RUN --mount=type=cache` caches,
    found by `marker` in the command that made them (the prepare command carries it). Without
    this a "cold" run would find its `prepare` layer in BuildKit's cache."""
    if not Path("/usr/bin/docker").exists():
        return
    for _ in range(3):  # a record goes once the records made on top of it went
        listed = sh(["docker", "system", "df", "-v", "--format", "{{json .BuildCache}}"])
        if listed.returncode != 0:
            return
        marked = [
            entry["ID"]
            for entry in json.loads(listed.stdout or "[]") or []
            if marker in entry.get("Description", "")
        ]
        if not marked:
            return
        for cache_id in marked:
            sh(["/usr/bin/docker", "builder", "prune", "-f", "--filter", f"id={cache_id}"],
               DOCKER_BUILDKIT="1")  # fmt: skip


def cold_start(project: Project) -> None:
    remove_images(project.name)
    remove_build_cache(project.name)
    shutil.rmtree(project.root / ".parapipe", ignore_errors=True)


def one_repetition(project: Project, repetition: int) -> None:
    cold_start(project)
    wall, image = run_parapipe(project)
    project.note("cold", wall)
    project.note("cold image", image)
    wall, _ = run_parapipe(project)
    project.note("unchanged", wall)
    project.edit_source(repetition)
    wall, image = run_parapipe(project)
    project.note("source edit", wall)
    project.note("source edit image", image)
    if project.edit_deps is not None:
        project.edit_deps(repetition)
        wall, image = run_parapipe(project)
        project.note("dependency edit", wall)
        project.note("dependency edit image", image)
    project.note("host floor", run_floor(project))


COLUMNS = [
    "cold",
    "unchanged",
    "source edit",
    "source edit image",
    "dependency edit",
    "dependency edit image",
    "host floor",
]


def table(projects: Sequence[Project]) -> str:
    lines = [
        "| project | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for project in projects:
        cells = []
        for column in COLUMNS:
            values = project.timings.get(column)
            cells.append(f"{statistics.median(values):.2f}" if values else "-")
        lines.append(f"| {project.key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", nargs="+", choices=sorted(MAKERS), default=list(MAKERS))
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="parapipe-edit-loop-"))
    projects: list[Project] = []
    status = 1
    try:
        for key in options.projects:
            root = scratch / key
            root.mkdir()
            projects.append(MAKERS[key](root, f"edit-loop-{key}-{os.getpid()}"))
        failures: list[str] = []
        for repetition in range(options.repeat):
            for project in projects:
                try:
                    one_repetition(project, repetition)
                except SystemExit as failure:  # one failed run: said, and the others go on
                    failures.append(f"repetition {repetition + 1} of {project.key}: {failure}")
                print(f"repetition {repetition + 1}: {project.key} done", file=sys.stderr)
        print("Median wall seconds of", options.repeat, "repetition(s):\n")
        print(table(projects))
        status = 1 if failures else 0
        for failed in failures:
            print(f"\nFAILED (left out of the medians): {failed}")
    finally:
        for project in projects:
            remove_images(project.name)
            remove_build_cache(project.name)
        shutil.rmtree(scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
