"""`parapipe watch` in a child process, its output read as it comes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

WAIT = 120.0  # generous: a bound on a hung watch, never a measure of speed


class WatchProcess:
    """`python -m parapipe watch ARGS` in `root`; stdout and stderr as one list of lines."""

    def __init__(self, root: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "parapipe", "watch", *args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, *, after: int = 0) -> int:
        """The index of the first line from `after` on that matches `pattern`."""
        deadline = time.monotonic() + WAIT
        with self._changed:
            while True:
                for index in range(after, len(self.lines)):
                    if re.search(pattern, self.lines[index]):
                        return index
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}:\n{self.output}")
                self._changed.wait(min(left, 1.0))

    def interrupt(self) -> int:
        """Ctrl-C, then the exit code."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=WAIT)
        self._reader.join(timeout=WAIT)
        return code

    def stop(self) -> None:
        """For a test's end, whatever happened: the watch must not outlive it."""
        if self.process.poll() is None:
            self.interrupt()
        if self.process.stdout is not None:
            self.process.stdout.close()
