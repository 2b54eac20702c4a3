"""`.parapipe/runs/<run-id>/`: where a run keeps every step's full log."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path
from typing import TextIO

KEPT_RUNS = 20
# Step names cannot contain '.', so these never collide with a step's `<step>.log`.
IMAGE_LOG = "image.build.log"
TRACEBACK_LOG = "parapipe.traceback.log"


def new_run_id() -> str:
    """`20261129-092234.123-a1b2c3`: sorts by start time, to the millisecond."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d}-{secrets.token_hex(3)}"


def ignore_state_dir(state_dir: Path) -> None:
    """As pytest's cache does: the state folder ignores itself, so no one commits it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by parapipe\n*\n")


class RunFolder:
    def __init__(self, state_dir: Path, run_id: str) -> None:
        self.state_dir = state_dir
        self.run_id = run_id
        self.path = state_dir / "runs" / run_id

    @classmethod
    def create(cls, state_dir: Path) -> RunFolder:
        folder = cls(state_dir, new_run_id())
        folder.path.mkdir(parents=True)
        ignore_state_dir(state_dir)
        folder._prune()
        return folder

    def step_log(self, step: str) -> Path:
        return self.path / f"{step}.log"

    def services_dir(self, step: str) -> Path:
        """`<step>.services/`: a log per service of the step, `<service>.log`."""
        return self.path / f"{step}.services"

    @property
    def image_log(self) -> Path:
        return self.path / IMAGE_LOG

    @property
    def traceback_log(self) -> Path:
        return self.path / TRACEBACK_LOG

    def open_log(self, path: Path) -> TextIO:
        return path.open("a", encoding="utf-8", buffering=1)

    def _prune(self) -> None:
        """Keep the newest KEPT_RUNS run folders; run ids sort by time."""
        runs = sorted(p for p in self.path.parent.iterdir() if p.is_dir())
        for old in runs[:-KEPT_RUNS]:
            shutil.rmtree(old, ignore_errors=True)
