"""The `export` and `hook` commands, and what `run` needs for them: changed files, reports."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parapipe.errors import ExitCode, UsageError
from parapipe.git.changes import Changes, changed_since
from parapipe.model import Pipeline

if TYPE_CHECKING:
    from parapipe.reporters.factory import ReportPaths

AddSpecOption = Callable[[argparse.ArgumentParser], None]
# `commands.add_parser` of an argparse sub-parsers action (argparse leaves its type private).
SubParsers = Any

_STEPS_HELP = (
    "the steps to run, separated by commas, with what they need "
    "(default: the steps tagged pre-push, else every step)"
)


def add_export_parser(commands: SubParsers, add_spec: AddSpecOption) -> None:
    export = commands.add_parser(
        "export",
        help="print a CI configuration that runs the pipeline",
        description="Print a CI configuration that runs the pipeline.",
    )
    targets = export.add_subparsers(dest="target", metavar="TARGET", parser_class=type(export))
    targets.required = True
    github = targets.add_parser(
        "github",
        help="a GitHub Actions workflow",
        description="Print a GitHub Actions workflow that runs the pipeline: one job running "
        "every step, or with --split one job per step, their needs mirroring the DAG. Save it "
        "as .github/workflows/parapipe.yml.",
    )
    add_spec(github)
    github.add_argument(
        "--split",
        action="store_true",
        help="one job per step, each on its own runner running 'parapipe run STEP --no-deps', "
        "logs handed on as artifacts (default: one job)",
    )
    github.add_argument(
        "--install",
        metavar="COMMAND",
        default="",
        help="the shell command that installs parapipe on the runner "
        "(default: pip install parapipe==<this version>)",
    )


def add_hook_parser(commands: SubParsers, add_spec: AddSpecOption) -> None:
    hook = commands.add_parser(
        "hook",
        help="install or remove a git pre-push hook that runs the pipeline",
        description="A git pre-push hook that runs the pipeline's steps before each push and "
        "stops the push if one fails. Steps with 'when: {changed: [...]}' run only if the "
        "push changes a file they watch.",
    )
    actions = hook.add_subparsers(dest="hook_command", metavar="ACTION", parser_class=type(hook))
    actions.required = True
    install = actions.add_parser(
        "install",
        help="write .git/hooks/pre-push",
        description="Write the repository's pre-push hook. A hook parapipe did not write is "
        "left alone unless --force is given.",
    )
    add_spec(install)
    install.add_argument("--steps", metavar="A,B", help=_STEPS_HELP)
    install.add_argument(
        "--force",
        action="store_true",
        help="replace a pre-push hook parapipe did not write, keeping it as "
        "pre-push.parapipe-backup (put back by 'hook uninstall')",
    )
    actions.add_parser(
        "uninstall",
        help="remove the pre-push hook parapipe wrote",
        description="Remove the pre-push hook parapipe wrote in the current repository, and "
        "put back the hook it replaced, if any.",
    )
    run = actions.add_parser(
        "run",
        help="what the hook runs (reads the refs being pushed on stdin)",
        description="Run the steps for a push. git hands the hook the remote's name and URL "
        "as arguments and one line per ref pushed on stdin; a deleted branch needs no check, "
        "and a new branch is compared with its merge-base with the remote's default branch. "
        "When the changes cannot be worked out, every step runs.",
    )
    add_spec(run)
    run.add_argument("--steps", metavar="A,B", help=_STEPS_HELP)
    run.add_argument("remote", nargs="?", default="origin", help="the remote's name (from git)")
    run.add_argument("url", nargs="?", help="the remote's URL (from git; not used)")


def dispatch(args: argparse.Namespace) -> int:
    from parapipe.git.hooks import install_hook, parse_steps, uninstall_hook
    from parapipe.graph import select_steps
    from parapipe.spec.load import load_pipeline

    if args.command == "hook" and args.hook_command == "uninstall":
        print(uninstall_hook(Path.cwd()))
        return ExitCode.OK
    pipeline = load_pipeline(args.spec)
    if args.command == "export":
        from parapipe.git.github_export import github_workflow

        sys.stdout.write(github_workflow(pipeline, split=args.split, install=args.install))
        return ExitCode.OK
    steps = parse_steps(args.steps)
    select_steps(pipeline, steps)  # an unknown step is a usage error now, not at push time
    if args.hook_command == "install":
        print(install_hook(pipeline, steps, force=args.force))
        return ExitCode.OK
    return _hook_run(pipeline, args, steps)


def _hook_run(pipeline: Pipeline, args: argparse.Namespace, steps: tuple[str, ...]) -> int:
    from parapipe.cli.app import _run, build_parser
    from parapipe.git.hooks import hook_changes, hook_steps

    ranges = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    changes = hook_changes(pipeline, ranges, args.remote, os.environ)
    if changes.nothing_pushed:
        print(f"parapipe: pre-push: {changes.note}: nothing to check", file=sys.stderr)
        return ExitCode.OK
    # Exactly what `parapipe run -f SPEC STEP...` would do, with the push's changes.
    run_args = build_parser().parse_args(
        ["run", "-f", str(args.spec), "--", *hook_steps(pipeline, steps)]
    )
    return _run(pipeline, run_args, changes)


def run_changes(
    pipeline: Pipeline, args: argparse.Namespace, changes: Changes | None
) -> frozenset[str] | None:
    """The changed files `when.changed` is checked against; None: unknown, every step runs."""
    if changes is None and args.changed_since:
        changes = changed_since(pipeline.image.source, args.changed_since)
    if changes is None:
        return None
    print(f"parapipe: when.changed: {changes.note}", file=sys.stderr)
    return changes.files


def check_run_options(args: argparse.Namespace) -> ReportPaths:
    """Usage errors found before any engine is contacted; the report files asked for."""
    from parapipe.reporters.factory import ReportPaths
    from parapipe.reporters.report_file import check_report_path

    if args.no_deps and not args.steps:
        raise UsageError("--no-deps needs the steps to run, such as 'parapipe run test --no-deps'")
    paths = {"junit": args.junit, "report": args.report, "timeline": args.timeline}
    for flag, path in paths.items():
        if path is not None:
            check_report_path(path, f"--{flag}")
    return ReportPaths(**paths)
