"""actionlint's verdict on a workflow text (the test extra installs it beside Python)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def check_with_actionlint(tmp_path: Path, text: str) -> None:
    found = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(found).exists():
        pytest.skip(
            "actionlint is not installed (it comes with the test extra: pip install -e '.[test]')"
        )
    workflows = tmp_path / "lint" / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "parapipe.yml").write_text(text)
    done = subprocess.run(
        [found, "-no-color", ".github/workflows/parapipe.yml"],
        cwd=tmp_path / "lint", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
