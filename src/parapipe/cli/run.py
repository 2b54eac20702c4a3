"""`parapipe run`: check the request, work out the changed files, then start the run."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from parapipe.cli.requests import RunRequest
from parapipe.cli.shell import ShellChoice, check_interactive, offer_shells_after
from parapipe.errors import UsageError

if TYPE_CHECKING:
    from parapipe.engine.api import Engine
    from parapipe.git.changes import Changes
    from parapipe.model import Pipeline, RunResult
    from parapipe.reporters.factory import ReportPaths
    from parapipe.run.pipeline_run import RunOptions


def run_command(request: RunRequest) -> int:
    from parapipe.spec.load import load_pipeline

    if request.interactive:
        check_interactive(request.output)

    return run_loaded(load_pipeline(request.spec), request)


def run_loaded(pipeline: Pipeline, request: RunRequest, changes: Changes | None = None) -> int:
    """`parapipe run` on a loaded pipeline; `changes` are the pushed changes when a pre-push
    hook runs it."""
    from parapipe.graph import select_steps

    options = run_options(pipeline, request, changes)
    if request.interactive:
        # Each step in a container of its own, which a failure keeps: none started ahead.
        options = replace(options, prewarm=False)
    # An unknown step or an unwritable report is a usage error before any engine is contacted.
    select_steps(pipeline, options.steps, with_needs=not options.no_deps)
    reports = check_run_request(request)
    shells = ShellChoice(shell=request.shell, keep_failed=request.keep_failed)
    return start_run(
        pipeline,
        options,
        request.engine,
        request.output,
        reports,
        shells=shells if request.interactive else None,
    )


def run_options(pipeline: Pipeline, request: RunRequest, changes: Changes | None) -> RunOptions:
    """What the run layer takes from `request` (see `run_loaded`)."""
    from parapipe.run.pipeline_run import RunOptions
    from parapipe.run.secrets import parse_secret_flags

    return RunOptions(
        steps=request.steps,
        jobs=request.jobs,
        keep_going=request.keep_going,
        schedule=request.schedule,
        no_deps=request.no_deps,
        changed_files=run_changes(pipeline, request.changed_since, changes),
        no_cache=request.no_cache,
        export_dir=request.export_dir,
        prewarm=request.prewarm,
        secrets=parse_secret_flags(request.secret_flags, request.secret_file_flags),
        keep_failed=request.interactive,
    )


def start_run(
    pipeline: Pipeline,
    options: RunOptions,
    engine_name: str,
    output: str,
    reports: ReportPaths,
    *,
    shells: ShellChoice | None = None,
) -> int:
    """Run the pipeline on the engine `engine_name` picks, shown as `output` asks, and return
    the exit code. The one place that wires the engine and the reporters to the run."""
    import anyio

    from parapipe.run.image_plan import list_source_soon

    # Listed while the rest of the run is imported and the engine is asked: an unchanged
    # re-run of a large tree is mostly these two.
    listing = list_source_soon(pipeline)

    from parapipe.engine.registry import choose_engine
    from parapipe.reporters.base import close_all
    from parapipe.reporters.factory import make_reporters
    from parapipe.run.pipeline_run import run_pipeline, select_run

    selection = select_run(pipeline, options)
    reporters = make_reporters(output, pipeline=pipeline, reports=reports)

    chosen: list[Engine] = []

    async def run_on_chosen_engine() -> RunResult:
        engine, reason = await choose_engine(engine_name)
        chosen.append(engine)
        if shells is not None and (refusal := engine.shell_refusal()) is not None:
            raise UsageError(f"-i/--interactive: {refusal}")
        return await run_pipeline(
            pipeline,
            options,
            reporters,
            engine=engine,
            engine_reason=reason,
            selection=selection,
            listing=listing,
        )

    try:
        result = anyio.run(run_on_chosen_engine)
    finally:
        close_all(reporters)
    if result.cleanup_error:
        print(f"parapipe: {result.cleanup_error}", file=sys.stderr)
    if shells is not None:
        return offer_shells_after(chosen[0], pipeline, result, selection.secrets, shells)
    return result.exit_code


def run_changes(
    pipeline: Pipeline, changed_since: str | None, changes: Changes | None
) -> frozenset[str] | None:
    """The changed files `when.changed` is checked against: `changes` (a push's), else those
    since the ref `changed_since`; None: unknown, every step runs."""
    from parapipe.git.changes import changed_since as changes_since_ref

    if changes is None and changed_since:
        changes = changes_since_ref(pipeline.image.source, changed_since)
    if changes is None:
        return None
    print(f"parapipe: when.changed: {changes.note}", file=sys.stderr)
    return changes.files


def check_run_request(request: RunRequest) -> ReportPaths:
    """Usage errors found before any engine is contacted; the report files asked for."""
    from parapipe.reporters.factory import ReportPaths
    from parapipe.reporters.report_file import check_report_path

    if request.no_deps and not request.steps:
        raise UsageError("--no-deps needs the steps to run, such as 'parapipe run test --no-deps'")
    paths = {"junit": request.junit, "report": request.report, "timeline": request.timeline}
    for flag, path in paths.items():
        if path is not None:
            check_report_path(path, f"--{flag}")
    return ReportPaths(**paths)
