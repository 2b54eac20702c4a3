"""Find an OCI runtime and ulimits with which Podman can start a container on this host.

Debian's podman picks crun when apt installs it before docker.io (which brings runc). On hosts
whose cgroups are in hybrid mode crun cannot start anything, and either runtime is refused the
default ulimits when the host's hard limits are lower than what podman asks for. `scripts/setup`
runs this module to try runtimes and limits for real and write the first that works to a
`containers.conf.d` drop-in; the tests run `probe` to tell a host where podman cannot run at all
(skip) from one that was merely not set up (fail).

Usage: python -m parapipe.engine.docker.podman_setup [--podman CMD] [--image REF] [--write DIR]
Prints one line saying what it chose and why; exits 0 when podman can run a container, 1 when it
cannot, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import re
import resource
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final

DROP_IN_NAME: Final = "parapipe.conf"
# What older versions of scripts/setup wrote; replaced by DROP_IN_NAME.
OLD_DROP_INS: Final = ("parapipe-ulimits.conf",)
SYSTEM_CONF_DIR: Final = Path("/etc/containers/containers.conf.d")
PROBE_TIMEOUT: Final = 60.0


class Refusal(Enum):
    """Why a runtime refused to start the probe container."""

    RLIMIT = "rlimit"  # a ulimit above what the host lets this process set
    RUNTIME = "runtime"  # the runtime cannot run containers on this host at all
    OTHER = "other"


# runc: "error setting rlimit type 7: operation not permitted"
# crun: "crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted"
_RUNC_RLIMIT: Final = re.compile(r"error setting rlimit type (\d+)", re.IGNORECASE)
_CRUN_RLIMIT: Final = re.compile(r"setrlimit\W+RLIMIT_(\w+)\W.*not permitted", re.IGNORECASE)
_RUNC_LIMIT_NAMES: Final = {"6": "nproc", "7": "nofile"}
_RUNTIME_UNUSABLE: Final = (
    re.compile(r"cgroups in hybrid mode not supported", re.IGNORECASE),
    re.compile(r"executable file `?\S+`? not found", re.IGNORECASE),
    re.compile(r"default OCI runtime \S+ not found", re.IGNORECASE),
)


def refused_limit(problem: str) -> str | None:
    """The ulimit (`nofile`, `nproc`, ...) that the runtime was refused, in either runtime's
    wording, or None when `problem` is not an rlimit refusal."""
    found = _RUNC_RLIMIT.search(problem)
    if found is not None:
        return _RUNC_LIMIT_NAMES.get(found[1], f"rlimit type {found[1]}")
    found = _CRUN_RLIMIT.search(problem)
    if found is not None:
        return found[1].lower()
    return None


def classify(problem: str) -> Refusal:
    if refused_limit(problem) is not None:
        return Refusal.RLIMIT
    if any(pattern.search(problem) for pattern in _RUNTIME_UNUSABLE):
        return Refusal.RUNTIME
    return Refusal.OTHER


def fix_hint(problem: str) -> str | None:
    """What a user should do about a `podman run` that failed for its runtime or its ulimits, or
    None when `problem` is something else. The engine appends this to the step's error."""
    kind = classify(problem)
    if kind is Refusal.OTHER:
        return None
    drop_in = SYSTEM_CONF_DIR / DROP_IN_NAME
    if kind is Refusal.RLIMIT:
        limit = refused_limit(problem)
        return (
            f"podman's default {limit} ulimit is above what this host allows: run scripts/setup"
            " (it finds limits that work), or put default_ulimits ="
            ' ["nofile=1024:1024", "nproc=1024:1024"] under [containers] in'
            f" {drop_in}"
        )
    return (
        "podman's OCI runtime cannot run containers on this host: run scripts/setup (it picks"
        f' a runtime that works), or put runtime = "runc" under [engine] in {drop_in}'
    )


@dataclass(frozen=True)
class Choice:
    """A runtime (None: podman's default) and ulimits (empty: podman's defaults) that started a
    container, and why they were needed."""

    runtime: str | None
    ulimits: tuple[tuple[str, int], ...]
    why: str

    def describe(self) -> str:
        runtime = self.runtime or "its default runtime"
        limits = ", ".join(f"{name}={value}" for name, value in self.ulimits)
        return f"{runtime}" + (f" with {limits}" if limits else "")

    def drop_in(self) -> str:
        lines = [f"# Written by scripts/setup: {self.why}"]
        if self.runtime is not None:
            lines += ["[engine]", f'runtime = "{self.runtime}"']
        if self.ulimits:
            values = ", ".join(f'"{name}={value}:{value}"' for name, value in self.ulimits)
            lines += ["[containers]", f"default_ulimits = [{values}]"]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NoWay:
    """Nothing tried could start a container; `why` is one line."""

    why: str


Runner = Callable[[Sequence[str]], tuple[int, str]]
"""Runs an argv; returns its exit code and what it printed (stdout, then stderr)."""


def run_quietly(argv: Sequence[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"{shlex.join(argv)} did not finish within {PROBE_TIMEOUT:.0f} s"
    return done.returncode, (done.stdout + done.stderr).strip()


def _ladder(hard: int, steps: Sequence[int]) -> list[int]:
    """The host's hard limit, then each lower step down to 1024, highest first."""
    top = hard if hard != resource.RLIM_INFINITY else 1048576
    return sorted({top, *(step for step in (*steps, 1024) if step < top)}, reverse=True)


def host_ladders() -> dict[str, list[int]]:
    return {
        "nofile": _ladder(
            resource.getrlimit(resource.RLIMIT_NOFILE)[1], (65536, 20000, 4096, 1024)
        ),
        "nproc": _ladder(resource.getrlimit(resource.RLIMIT_NPROC)[1], (32768, 4096, 1024)),
    }


def probe(
    podman: Sequence[str],
    image: str = "busybox:latest",
    *,
    runner: Runner = run_quietly,
    ladders: dict[str, list[int]] | None = None,
) -> Choice | NoWay:
    """Try podman's defaults, then each runtime with ulimits lowered one refusal at a time,
    and return the first that starts `image`."""
    ladders = host_ladders() if ladders is None else ladders
    code, named = runner([*podman, "info", "--format", "{{.Host.OCIRuntime.Name}}"])
    default = named.strip() if code == 0 and named.strip().isidentifier() else None
    failures: list[str] = []
    for runtime in (None, *(name for name in ("runc", "crun") if name != default)):
        label = (
            f"{default or 'the default runtime'} (podman's default)" if runtime is None else runtime
        )
        found = _try_runtime(podman, image, runtime, label, runner, ladders, failures)
        if found is not None:
            return found
    return NoWay("podman cannot start a container here: " + "; ".join(failures))


def _try_runtime(
    podman: Sequence[str],
    image: str,
    runtime: str | None,
    label: str,
    runner: Runner,
    ladders: dict[str, list[int]],
    failures: list[str],
) -> Choice | None:
    refused_names: list[str] = []  # the ulimits this runtime was refused, for the why
    # None: podman's own defaults; then an index into each ladder once a limit was refused.
    position: dict[str, int] | None = None
    while True:
        argv = [*podman, *(["--runtime", runtime] if runtime else [])]
        argv += ["run", "--rm", "--pull=never"]
        ulimits = () if position is None else tuple((n, ladders[n][i]) for n, i in position.items())
        for name, value in ulimits:
            argv += ["--ulimit", f"{name}={value}:{value}"]
        code, stderr = runner([*argv, image, "true"])
        if code == 0:
            refusals = [f"{label} was refused {' and '.join(refused_names)} ulimits"]
            why = "; ".join([*failures, *refusals[: bool(refused_names)]])
            return Choice(runtime, ulimits, why or "podman's defaults start a container")
        problem = _last_line(stderr) or f"exit {code}"
        refused = refused_limit(problem)
        if refused is None or refused not in ladders:
            failures.append(f"{label}: {_gist(problem)}")
            return None
        if refused not in refused_names:
            refused_names.append(refused)
        if position is None:
            position = dict.fromkeys(ladders, 0)
        elif position[refused] + 1 < len(ladders[refused]):
            position[refused] += 1
        else:
            failures.append(
                f"{label} was refused {refused}={ladders[refused][-1]}, the lowest tried"
            )
            return None


def _gist(problem: str) -> str:
    """The part of an OCI runtime's error that says what went wrong, without its wrappers."""
    for pattern in _RUNTIME_UNUSABLE:
        found = pattern.search(problem)
        if found is not None:
            return found[0]
    return re.sub(r"^(Error: )?(OCI runtime error: )?", "", problem)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def write_drop_in(choice: Choice, conf_dir: Path) -> Path | None:
    """Write `choice` as podman's defaults in `conf_dir`; remove the drop-in when podman's own
    defaults work. Returns the file written, if any."""
    target = conf_dir / DROP_IN_NAME
    for old in OLD_DROP_INS:
        (conf_dir / old).unlink(missing_ok=True)
    if choice.runtime is None and not choice.ulimits:
        return None
    conf_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(choice.drop_in())
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="podman_setup", description=__doc__.split("\n")[0])
    parser.add_argument("--podman", default="podman", help="the podman command (may hold args)")
    parser.add_argument("--image", default="busybox:latest")
    parser.add_argument("--write", type=Path, metavar="DIR", help="write the drop-in to DIR")
    args = parser.parse_args(argv)
    podman = shlex.split(args.podman)
    # A drop-in of ours from an earlier run would make the defaults look good: probe without it.
    if args.write is not None:
        for name in (DROP_IN_NAME, *OLD_DROP_INS):
            (args.write / name).unlink(missing_ok=True)
    result = probe(podman, args.image)
    if isinstance(result, NoWay):
        print(f"setup: {result.why}", file=sys.stderr)
        return 1
    written = write_drop_in(result, args.write) if args.write is not None else None
    where = f" ({written})" if written else ""
    print(f"setup: podman uses {result.describe()}{where}: {result.why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
