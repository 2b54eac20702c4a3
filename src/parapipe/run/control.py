"""A way to stop a run from outside, the way Ctrl-C stops it: `parapipe watch` stops the run in
progress when a file changes, and owns the signals for the whole session."""

from __future__ import annotations

from typing import Protocol


class Stoppable(Protocol):
    def interrupt(self, signum: int | None) -> None: ...

    def abandon(self) -> None: ...


class RunControl:
    """Hands a caller the run's own interrupt. A run given one opens no signal receiver of its
    own: the caller forwards the signals it receives. A stop asked for before the run has
    started is kept and applied as it starts; one asked for after it ended does nothing."""

    def __init__(self) -> None:
        self._run: Stoppable | None = None
        self._stopped = False
        self._signum: int | None = None
        self._abandoned = False

    def attach(self, run: Stoppable) -> None:
        self._run = run
        if self._stopped:
            run.interrupt(self._signum)
        if self._abandoned:
            run.abandon()

    def interrupt(self, signum: int | None = None) -> None:
        """Stop the running steps (their containers are killed and removed) and start no
        more, as a signal does; `signum` is the signal, or None for a stop that is not one."""
        self._stopped = True
        self._signum = self._signum if signum is None else signum
        if self._run is not None:
            self._run.interrupt(signum)

    def abandon(self) -> None:
        """Stop waiting for anything, as a second Ctrl-C does; the run's sweep still runs."""
        self._abandoned = True
        if self._run is not None:
            self._run.abandon()
