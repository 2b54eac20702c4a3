"""`parapipe watch`: run the selection, then run it again whenever a file that goes into the
image changes. A change during a run stops that run through its own interrupt (as Ctrl-C
does: its containers are killed and removed) before the next one starts. The session owns the
signals: Ctrl-C stops the run in progress, if any, and ends the watch with 130."""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from parapipe.cli.requests import WatchRequest
from parapipe.cli.run import check_run_request, run_options
from parapipe.errors import ParapipeError

if TYPE_CHECKING:
    from parapipe.engine.api import Engine
    from parapipe.model import Pipeline
    from parapipe.run.control import RunControl

# watchfiles yields a batch once no change came for STEP_MS, or after DEBOUNCE_MS at most: an
# editor's save (write, rename, chmod) is one batch, a checkout of many files a few.
STEP_MS = 200
DEBOUNCE_MS = 1600
FILES_SHOWN = 5  # the changed files a `watch:` line names before it says how many more


def watch_command(request: WatchRequest) -> int:
    from parapipe.spec.load import load_pipeline

    pipeline = load_pipeline(request.run.spec)
    _check(pipeline, request)  # the first run's usage errors end the watch at once, as in `run`
    return anyio.run(_watch, pipeline, request)


async def _watch(pipeline: Pipeline, request: WatchRequest) -> int:
    return await WatchSession(pipeline, request).run()  # its scopes need the event loop


def _check(pipeline: Pipeline, request: WatchRequest) -> None:
    from parapipe.run.pipeline_run import select_run

    check_run_request(request.run)
    select_run(pipeline, run_options(pipeline, request.run, None))


class WatchSession:
    def __init__(self, pipeline: Pipeline, request: WatchRequest) -> None:
        self.pipeline = pipeline
        self.request = request
        self.source = pipeline.image.source
        self.signal: int | None = None
        self._control: RunControl | None = None
        self._idle = anyio.CancelScope()
        # Set as the session ends: the watcher's thread returns at once rather than at its
        # next timeout (watchfiles checks it between waits).
        self._stop_watching = anyio.Event()
        send, receive = anyio.create_memory_object_stream[list[str]](math.inf)
        self._changes_in: MemoryObjectSendStream[list[str]] = send
        self._changes: MemoryObjectReceiveStream[list[str]] = receive

    async def run(self) -> int:
        from parapipe.engine.registry import choose_engine

        engine, reason = await choose_engine(self.request.run.engine)
        async with anyio.create_task_group() as tasks:
            await tasks.start(self._watch_signals, tasks.cancel_scope)
            await tasks.start(self._watch_files)
            changed = await self._run_once(engine, reason)
            while self.signal is None:
                if changed is None:
                    changed = await self._wait_for_change()
                    if changed is None:  # a signal came first
                        break
                files = sorted(set(changed).union(*self._queued_changes()))
                say(f"watch: {describe_changes(files)} — running again")
                changed = await self._run_once(engine, reason)
            self._stop_watching.set()
            tasks.cancel_scope.cancel()
        assert self.signal is not None  # only a signal ends the loop
        return 128 + self.signal

    async def _wait_for_change(self) -> list[str] | None:
        say("watch: waiting for changes (Ctrl-C to stop)")
        self._idle = anyio.CancelScope()  # a scope is entered once
        with self._idle:
            return await self._changes.receive()
        return None

    async def _run_once(self, engine: Engine, engine_reason: str) -> list[str] | None:
        """One run of the selection; the files whose change stopped it, if one did."""
        from parapipe.run.control import RunControl

        control = RunControl()
        changed: list[str] | None = None

        async def stop_on_change() -> None:
            nonlocal changed
            changed = await self._changes.receive()
            control.interrupt()

        self._control = control
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(stop_on_change)
                await self._run_pipeline(engine, engine_reason, control)
                tasks.cancel_scope.cancel()
        finally:
            self._control = None
        return changed

    async def _run_pipeline(self, engine: Engine, engine_reason: str, control: RunControl) -> None:
        """What `parapipe run` does, on the spec as it is now; an error is shown, and the watch
        goes on: the next edit may fix it."""
        from parapipe.reporters.base import close_all
        from parapipe.reporters.factory import make_reporters
        from parapipe.run.pipeline_run import run_pipeline, select_run
        from parapipe.spec.load import load_pipeline

        request = self.request.run
        try:
            pipeline = await anyio.to_thread.run_sync(load_pipeline, request.spec)
            options = run_options(pipeline, request, None)
            selection = select_run(pipeline, options)
            reporters = make_reporters(
                request.output, pipeline=pipeline, reports=check_run_request(request)
            )
            try:
                result = await run_pipeline(
                    pipeline,
                    options,
                    reporters,
                    engine=engine,
                    engine_reason=engine_reason,
                    selection=selection,
                    control=control,
                )
            finally:
                close_all(reporters)
        except ParapipeError as exc:
            say(f"parapipe: {exc}")
            return
        if result.cleanup_error:
            say(f"parapipe: {result.cleanup_error}")

    def _queued_changes(self) -> Iterable[list[str]]:
        while True:
            try:
                yield self._changes.receive_nowait()
            except anyio.WouldBlock:
                return

    async def _watch_signals(
        self, session: anyio.CancelScope, *, task_status: TaskStatus[None]
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.signal is not None:  # a second signal: stop waiting for anything
                    if self._control is not None:
                        self._control.abandon()
                    self._stop_watching.set()
                    session.cancel()
                    continue
                self.signal = signum
                say("watch: interrupted, stopping")
                if self._control is not None:
                    self._control.interrupt(signum)
                self._idle.cancel()

    async def _watch_files(self, *, task_status: TaskStatus[None]) -> None:
        """Send on each batch of changed source files, relative to `image.source`."""
        import watchfiles

        from parapipe.run.source_files import select_source_files

        exclude = self.pipeline.image.exclude
        # The run's own writes (state, reports, exports) must not set off the next run.
        run = self.request.run
        written = [self.pipeline.state_dir]
        written += [p.resolve() for p in (run.export_dir, run.junit, run.report, run.timeline) if p]
        known = set(await anyio.to_thread.run_sync(select_source_files, self.source, exclude))

        def may_be_source(_: watchfiles.Change, path: str) -> bool:
            return is_candidate(Path(path), self.source, written)

        watcher = watchfiles.awatch(
            self.source,
            watch_filter=may_be_source,
            step=STEP_MS,
            debounce=DEBOUNCE_MS,
            stop_event=self._stop_watching,
        )
        task_status.started()
        async for batch in watcher:
            now = set(await anyio.to_thread.run_sync(select_source_files, self.source, exclude))
            # A file that goes into the image now (created, edited) or went in before (deleted).
            changed = {self._relative(path) for _, path in batch} & (known | now)
            known = now
            if changed:
                await self._changes_in.send(sorted(changed))

    def _relative(self, path: str) -> str:
        return Path(path).relative_to(self.source).as_posix()


def is_candidate(path: Path, source: Path, written: Iterable[Path]) -> bool:
    """Whether a changed `path` may be a source file, judged from its name alone: under
    `source`, outside git's folder and what the run writes. The watch then asks git."""
    from parapipe.run.source_files import ALWAYS_EXCLUDED

    if not path.is_relative_to(source) or any(path.is_relative_to(w) for w in written):
        return False
    return ALWAYS_EXCLUDED.isdisjoint(path.relative_to(source).parts)


def describe_changes(files: list[str]) -> str:
    """`2 files changed: src/a.py, README.md`, naming at most FILES_SHOWN."""
    shown = ", ".join(files[:FILES_SHOWN])
    more = f" and {len(files) - FILES_SHOWN} more" if len(files) > FILES_SHOWN else ""
    noun = "file" if len(files) == 1 else "files"
    return f"{len(files)} {noun} changed: {shown}{more}"


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
