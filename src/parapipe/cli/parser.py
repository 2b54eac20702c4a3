"""The command line's grammar: every command, option and help text. `requests.request_from`
turns what it parses into the typed request the command runs with."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from parapipe import __version__
from parapipe.cli.image import add_image_parser
from parapipe.cli.requests import (
    DEFAULT_MAX_SIZE,
    DEFAULT_OUTPUT,
    DEFAULT_SCHEDULE,
    DEFAULT_SPEC,
    GRAPH_FORMATS,
    SCHEDULES,
    default_engine,
    default_jobs,
)
from parapipe.errors import ExitCode
from parapipe.model import ENGINE_CHOICES, OUTPUT_MODES

AddSpecOption = Callable[[argparse.ArgumentParser], None]
# `commands.add_parser` of an argparse sub-parsers action (argparse leaves its type private).
SubParsers = Any

EXIT_CODES_HELP = """\
exit codes:
  0    every step passed
  1    a step failed (or a setup command of the image)
  2    invalid spec or usage, a --junit/--report/--timeline file that cannot be written,
       or a missing secret
  3    no container engine reachable, or an internal error
  130  interrupted (Ctrl-C); 143 for SIGTERM, 129 for SIGHUP (the terminal closed)
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
        default=default_jobs(),
        metavar="N",
        help="run at most N steps at once (default: the number of CPUs, %(default)s here)",
    )
    run.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default=default_engine(),
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
        default=DEFAULT_SCHEDULE,
        help="which ready step starts first when more are ready than --jobs allows: "
        "critical-path starts the one with the longest chain of work after it, timed from "
        "earlier runs; fifo starts them in the order they got ready (default: critical-path)",
    )
    run.add_argument(
        "--output",
        choices=OUTPUT_MODES,
        default=DEFAULT_OUTPUT,
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
    run.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="once the run has settled, offer a shell in each step that failed, in its"
        " container as it stopped; leaving it ends the run with the run's exit code. Needs a"
        " terminal on stdin (else exit 2); every step then runs in a container of its own",
    )
    run.add_argument(
        "--keep-failed",
        action="store_true",
        help="with -i: keep the failed steps' images afterwards and print their ids"
        " (default: removed)",
    )
    _add_shell_option(run)

    commands.add_parser(
        "watch",
        parents=[run],  # every option of `run`, shared rather than repeated
        add_help=False,  # `run`'s own -h comes with them
        help="run the steps, then again whenever a source file changes",
        description="Run the steps as 'parapipe run' does, then run them again whenever a file "
        "that goes into the image changes (under image.source, neither git-ignored nor "
        "matched by image.exclude). A change during a run stops it at once, its containers "
        "killed and removed, and starts the next. The step cache and each step's inputs "
        "decide what actually runs again. Ctrl-C ends the watch (exit 130).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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

    add_export_parser(commands, _add_spec_option)
    add_hook_parser(commands, _add_spec_option)
    add_cache_parser(commands, _add_spec_option)
    add_shell_parser(commands, _add_spec_option)
    add_image_parser(commands, _add_spec_option)
    return parser


def add_shell_parser(commands: SubParsers, add_spec: AddSpecOption) -> None:
    shell = commands.add_parser(
        "shell",
        help="open a shell in a step's setting, to try a command",
        description="Open an interactive shell in a fresh container of the pipeline image with"
        " STEP's workdir, env, secrets and caches, and its needs' outputs as 'run STEP"
        " --no-deps' finds them (a hand-off, else the step cache). The container is removed"
        " when you leave; the exit code is the shell's.",
    )
    add_spec(shell)
    shell.add_argument("step", metavar="STEP", help="the step whose setting the shell has")
    _add_shell_option(shell)
    shell.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default=default_engine(),
        help="as for 'parapipe run' (default: $PARAPIPE_ENGINE, else auto)",
    )
    shell.add_argument(
        "--secret", action="append", default=[], metavar="NAME=VALUE", help="as for 'run'"
    )
    shell.add_argument(
        "--secret-file", action="append", default=[], metavar="NAME=PATH", help="as for 'run'"
    )


def _add_shell_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shell",
        metavar="CMD",
        help="the shell to open, split like a shell command line"
        " (default: /bin/bash when the image has it, else /bin/sh)",
    )


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
        "after a first job that builds the image once and hands it on (default: one job)",
    )
    github.add_argument(
        "--registry",
        metavar="REF",
        default="",
        help="with --split: push the image to REF (e.g. ghcr.io/owner/repo) and pull it in the "
        "step jobs, instead of handing it on as an artifact",
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


def add_cache_parser(commands: SubParsers, add_spec: AddSpecOption) -> None:
    cache = commands.add_parser(
        "cache",
        help="manage the step cache",
        description="The step cache (.parapipe/cache/) keeps each passed step's log and outputs"
        " under a key of everything it depended on, so an identical step is not run again.",
    )
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    prune = actions.add_parser(
        "prune",
        help="remove the least recently used entries beyond a size",
        description="Remove the least recently used step-cache entries until the cache holds"
        " at most --max-size; with --volumes, also remove the pipeline's cache volumes; with"
        " --images, its old images.",
    )
    add_spec(prune)
    prune.add_argument(
        "--max-size",
        default=DEFAULT_MAX_SIZE,
        metavar="SIZE",
        help="the most the cache may hold, e.g. 500M, 2G, or 0 to empty it"
        f" (default: {DEFAULT_MAX_SIZE})",
    )
    prune.add_argument(
        "--volumes",
        action="store_true",
        help="also remove the pipeline's cache volumes (steps' `caches`), which the next run"
        " creates again empty; a volume that a container still mounts stays, and the command"
        " fails (exit 3)",
    )
    prune.add_argument(
        "--images",
        action="store_true",
        help="also remove the pipeline's images beyond the newest --keep (and the untagged ones"
        " failed builds left), except those a container uses",
    )
    prune.add_argument(
        "--keep",
        type=_positive_int,
        metavar="N",
        help="how many of the pipeline's images --images keeps (default: the spec's image.keep,"
        " 3 when it has none)",
    )
    prune.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="the engine whose volumes --volumes and images --images remove; auto as for"
        " 'parapipe run' (default: auto)",
    )


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
