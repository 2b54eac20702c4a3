"""`parapipe run` as it runs in a GitHub Actions job: groups, annotations, the job summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers.docker import BUSYBOX
from tests.helpers.project import Project

pytestmark = pytest.mark.docker


def test_a_run_on_github_actions_groups_logs_annotates_failures_and_writes_a_summary(
    project: Project,
) -> None:
    (project.root / "lib").mkdir()
    (project.root / "lib" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    project.write_spec(f"""
        image: {{from: {BUSYBOX}, workdir: /work}}
        steps:
          lint: {{run: "echo all good"}}
          test:
            run: ["echo '/work/lib/calc.py:2:12: wrong operator'", "exit 1"]
            needs: [lint]
    """)
    summary = project.root / "summary.md"
    env = {
        **os.environ,
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(summary),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "parapipe", "run", "-f", "ci.yaml"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert re.search(r"^::group::lint: passed in [0-9.]+s$", out, re.MULTILINE)
    group = out.split("::group::test: failed", 1)[1].split("::endgroup::", 1)[0]
    assert "/work/lib/calc.py:2:12: wrong operator" in group
    # The location in the container is mapped back to the file in the repository.
    assert (
        "::error title=test failed,file=lib/calc.py,line=2,col=12::failed: exit code 1"
        "%0A/work/lib/calc.py:2:12: wrong operator"
    ) in out.splitlines()
    text = summary.read_text()
    assert text.startswith("### ❌ parapipe: pipeline")
    assert "| `test` | ❌ failed |" in text
    assert "```mermaid" in text
