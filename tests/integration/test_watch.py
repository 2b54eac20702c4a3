"""`parapipe watch` end to end: real file edits, real containers through the real daemon."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.docker import BUSYBOX, containers_labelled
from tests.helpers.project import Project
from tests.helpers.watch import WatchProcess

pytestmark = pytest.mark.docker

WAITING = r"^watch: waiting for changes"


@pytest.fixture
def watches(project: Project) -> Iterator[list[WatchProcess]]:
    started: list[WatchProcess] = []
    yield started
    for watch in started:
        watch.stop()


def start_watch(project: Project, watches: list[WatchProcess], *args: str) -> WatchProcess:
    watch = WatchProcess(project.root, "-f", "ci.yaml", "--output", "plain", *args)
    watches.append(watch)
    return watch


def test_an_edit_runs_the_steps_again(project: Project, watches: list[WatchProcess]) -> None:
    (project.root / "f.txt").write_text("first\n")
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          show: {{run: "cat f.txt"}}
    """)
    watch = start_watch(project, watches)
    seen = watch.wait_for(r"show\s+\| first")
    seen = watch.wait_for(WAITING, after=seen)
    (project.root / "f.txt").write_text("second\n")
    seen = watch.wait_for(r"^watch: 1 file changed: f\.txt — running again$", after=seen)
    watch.wait_for(r"show\s+\| second", after=seen)
    assert watch.interrupt() == 130, watch.output


def test_an_edit_during_a_run_stops_it_and_starts_the_next(
    project: Project, watches: list[WatchProcess]
) -> None:
    (project.root / "f.txt").write_text("first\n")
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          slow: {{run: ["echo started-$(cat f.txt)", sleep 300]}}
    """)
    watch = start_watch(project, watches)
    seen = watch.wait_for(r"slow\s+\| started-first")
    first_run = project.last_run().name
    assert containers_labelled(first_run) != []  # the step's container runs
    (project.root / "f.txt").write_text("second\n")
    seen = watch.wait_for(r"^watch: 1 file changed: f\.txt — running again$", after=seen)
    # The stopped run swept its containers before the next one started.
    assert containers_labelled(first_run) == [], watch.output
    seen = watch.wait_for(r"slow\s+\| started-second", after=seen)
    second_run = project.last_run().name
    assert second_run != first_run
    stopped_log = project.root / ".parapipe" / "runs" / first_run / "slow.log"
    assert "interrupted" in stopped_log.read_text()
    assert watch.interrupt() == 130, watch.output
    assert containers_labelled(second_run) == []


def test_ignored_and_excluded_files_do_not_trigger_a_run(
    project: Project, watches: list[WatchProcess]
) -> None:
    (project.root / ".gitignore").write_text("ignored.txt\n")
    (project.root / "f.txt").write_text("first\n")
    project.write_spec(f"""
        image: {{from: {BUSYBOX}, exclude: [excluded.txt]}}
        steps:
          show: {{run: "cat f.txt"}}
    """)
    watch = start_watch(project, watches)
    seen = watch.wait_for(WAITING)
    (project.root / "ignored.txt").write_text("x\n")
    (project.root / "excluded.txt").write_text("x\n")
    (project.root / "f.txt").write_text("second\n")
    # The first change the watch reports is the source file's alone, whichever batch the
    # ignored ones fell in.
    changed = watch.wait_for(r"^watch: .* changed", after=seen)
    assert watch.lines[changed] == "watch: 1 file changed: f.txt — running again", watch.output
    watch.wait_for(WAITING, after=changed)
    assert watch.interrupt() == 130, watch.output


def test_an_edit_no_step_inputs_match_restores_every_step_from_the_cache(
    project: Project, watches: list[WatchProcess]
) -> None:
    (project.root / "a.txt").write_text("a\n")
    (project.root / "notes.md").write_text("first\n")
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          read-a: {{run: "cat a.txt", inputs: [a.txt]}}
    """)
    watch = start_watch(project, watches)
    seen = watch.wait_for(r"^1 passed")
    seen = watch.wait_for(WAITING, after=seen)
    (project.root / "notes.md").write_text("second\n")
    seen = watch.wait_for(r"^watch: 1 file changed: notes\.md", after=seen)
    watch.wait_for(r"^1 cached", after=seen)
    assert watch.interrupt() == 130, watch.output


def test_ctrl_c_while_waiting_exits_130(project: Project, watches: list[WatchProcess]) -> None:
    project.write_spec(f"""
        image: {{from: {BUSYBOX}}}
        steps:
          ok: {{run: "true"}}
    """)
    watch = start_watch(project, watches)
    watch.wait_for(WAITING)
    assert watch.interrupt() == 130, watch.output
    assert containers_labelled(project.last_run().name) == []
