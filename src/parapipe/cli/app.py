"""The command line: parse, load, hand over, and turn every outcome into an exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from parapipe import __version__
from parapipe.errors import ExitCode, ParapipeError, SpecError
from parapipe.model import ENGINE_CHOICES, OUTPUT_MODES

if TYPE_CHECKING:
    from parapipe.git.changes import Changes
    from parapipe.model import Pipeline

DEFAULT_SPEC = Path("pipelines/ci.yaml")
ENGINES = ENGINE_CHOICES
OUTPUTS = OUTPUT_MODES
GRAPH_FORMATS = ("text", "mermaid", "dot")
SCHEDULES = ("critical-path", "fifo")

EXIT_CODES_HELP = """\
exit codes:
  0    every step passed
  1    a step failed (or a setup command of the image)
  2    invalid spec or usage, a --junit/--report/--timeline file that cannot be written,
       or a missing secret
  3    no container engine reachable, or an internal error
  130  interrupted (Ctrl-C); 143 for SIGTERM
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error we print, plus where to look.
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="parapipe",
        description="Run a CI pipeline's steps in parallel containers made from one image.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"parapipe {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser(
        "run",
        help="build the pipeline image and run the steps",
        description="Build the pipeline's image (reused when nothing in it changed), then run "
        "each step in its own container from it, each as soon as its needs passed.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_spec_option(run)
    run.add_argument(
        "steps",
        nargs="*",
        metavar="STEP",
        help="run only these steps and everything they need, or with --no-deps only these "
        "(default: every step)",
    )
    run.add_argument(
        "-j",
        "--jobs",
        type=_positive_int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="run at most N steps at once (default: the number of CPUs, %(default)s here)",
    )
    run.add_argument(
        "--engine",
        choices=ENGINES,
        default=os.environ.get("PARAPIPE_ENGINE", "auto"),
        help="container engine; auto takes dagger when a Dagger session is open or a dagger "
        "CLI answers, else the first of docker and podman that answers "
        "(default: $PARAPIPE_ENGINE or auto)",
    )
    run.add_argument(
        "--keep-going",
        action="store_true",
        help="after a failure, still run every step that does not depend on it "
        "(default: stop the running steps and start no more)",
    )
    run.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="critical-path",
        help="which ready step starts first when more are ready than --jobs allows: "
        "critical-path starts the one with the longest chain of work after it, timed from "
        "earlier runs; fifo starts them in the order they got ready (default: critical-path)",
    )
    run.add_argument(
        "--output",
        choices=OUTPUTS,
        default="auto",
        help="tty: live view; plain: prefixed lines for logs; quiet: failures and the "
        "summary only; github: plain lines with each step's log folded into a group; auto: "
        "github when GITHUB_ACTIONS=true, else tty on a terminal, else plain (default: auto)",
    )
    run.add_argument(
        "--no-deps",
        action="store_true",
        help="run exactly the named steps, treating their needs as passed (as one job of "
        "'export github --split' does); the outputs of those needs come from "
        ".parapipe/handoff/NEED/, else from the step cache",
    )
    run.add_argument(
        "--changed-since",
        metavar="REF",
        help="skip each step with 'when: {changed: [...]}' whose globs match no file that "
        "differs between the working tree and the merge-base of REF and HEAD (untracked "
        "files count as changed); without it such steps always run",
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="run every step, even one whose identical run passed before (the step cache is "
        "still written)",
    )
    run.add_argument(
        "--no-prewarm",
        action="store_true",
        help="start each step's container only when the step starts, in a network of its own "
        "(default: Docker and Podman start the containers of the steps about to run ahead of "
        "time, fresh ones from the image, in networks that a few holder containers lend them, "
        "never to two steps at the same time)",
    )
    run.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="at the end, copy every step's outputs into DIR, each at its own path",
    )
    run.add_argument(
        "--junit", type=Path, metavar="PATH", help="write a JUnit XML report, one testcase per step"
    )
    run.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="write a JSON record of the run (schema: docs/report-schema.json)",
    )
    run.add_argument(
        "--timeline",
        type=Path,
        metavar="PATH",
        help="write a self-contained HTML Gantt chart of the run, critical path outlined",
    )
    run.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the value of a secret that steps name in 'secrets:' (repeatable); it wins over "
        "$NAME. It shows on parapipe's own command line: prefer $NAME or --secret-file",
    )
    run.add_argument(
        "--secret-file",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a secret's value read from a file, without one trailing newline (repeatable)",
    )

    validate = commands.add_parser(
        "validate",
        help="check the spec without running anything",
        description="Load and check the spec: syntax, keys, types, paths, needs and cycles.",
    )
    _add_spec_option(validate)

    graph = commands.add_parser(
        "graph",
        help="print the step graph",
        description="Print the steps and their needs, as text, a Mermaid chart or Graphviz dot.",
    )
    _add_spec_option(graph)
    graph.add_argument("--format", choices=GRAPH_FORMATS, default="text", help="(default: text)")
    graph.add_argument(
        "steps", nargs="*", metavar="STEP", help="only these steps and what they need"
    )

    from parapipe.cli.cache import add_cache_parser
    from parapipe.cli.commands import add_export_parser, add_hook_parser

    add_export_parser(commands, _add_spec_option)
    add_hook_parser(commands, _add_spec_option)
    add_cache_parser(commands, _add_spec_option)
    return parser


def _add_spec_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--file",
        dest="spec",
        type=Path,
        default=DEFAULT_SPEC,
        metavar="SPEC",
        help=f"the pipeline spec (default: {DEFAULT_SPEC})",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ParapipeError as exc:
        print(f"parapipe: {exc}" if _needs_prefix(exc) else str(exc), file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("parapipe: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


def _needs_prefix(exc: ParapipeError) -> bool:
    return not (isinstance(exc, SpecError) and exc.location is not None)


def _dispatch(args: argparse.Namespace) -> int:
    from parapipe.spec.load import load_pipeline

    if args.command in ("export", "hook"):
        from parapipe.cli.commands import dispatch

        return dispatch(args)
    if args.command == "cache":
        from parapipe.cli.cache import run_cache_command

        return run_cache_command(args)
    pipeline = load_pipeline(args.spec)
    if args.command == "validate":
        count = len(pipeline.steps)
        print(f"{args.spec}: valid, {count} step{'s' if count != 1 else ''}")
        return ExitCode.OK
    if args.command == "graph":
        from parapipe.graph import render, select_steps

        sys.stdout.write(render(pipeline, select_steps(pipeline, args.steps), args.format))
        return ExitCode.OK
    return _run(pipeline, args)


def _run(pipeline: Pipeline, args: argparse.Namespace, changes: Changes | None = None) -> int:
    """`parapipe run`; `changes` are the pushed changes when a pre-push hook runs it."""
    import anyio

    from parapipe.cli.commands import check_run_options, run_changes
    from parapipe.graph import select_steps
    from parapipe.reporters.factory import make_reporter
    from parapipe.run.pipeline_run import RunOptions, run_pipeline
    from parapipe.run.secrets import parse_secret_flags

    options = RunOptions(
        steps=tuple(args.steps),
        jobs=args.jobs,
        keep_going=args.keep_going,
        engine=args.engine,
        schedule=args.schedule,
        no_deps=args.no_deps,
        changed_files=run_changes(pipeline, args, changes),
        no_cache=args.no_cache,
        export_dir=args.export,
        prewarm=not args.no_prewarm,
        secrets=parse_secret_flags(args.secret, args.secret_file),
    )
    # An unknown step or an unwritable report is a usage error before any engine is contacted.
    select_steps(pipeline, options.steps, with_needs=not options.no_deps)
    reports = check_run_options(args)
    reporter = make_reporter(args.output, pipeline=pipeline, reports=reports)
    try:
        result = anyio.run(run_pipeline, pipeline, options, reporter)
    finally:
        reporter.close()
    if result.cleanup_error:
        print(f"parapipe: {result.cleanup_error}", file=sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
