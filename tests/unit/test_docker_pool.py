"""The pool's command lines and the script a pooled container runs, without a container engine:
the script goes through the host's own `sh`, as it would through the container's."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from parapipe.engine.api import CacheVolume, ServiceRun, StepRun, step_command
from parapipe.engine.docker import argv as argvs
from parapipe.engine.docker import loader
from parapipe.engine.docker import pool as docker_pool
from parapipe.model import LABEL_STEP, Prewarm
from tests.helpers.steps import make_step_run

IMAGE_ID = "sha256:" + "a" * 64
NONCE = "0123456789abcdef"


def request(**overrides: object) -> Prewarm:
    fields: dict[str, object] = {
        "run_id": "20260507-101500.123-ab12",
        "image_id": IMAGE_ID,
        "workdir": "/src",
        "labels": {"io.parapipe.pipeline": "ci"},
        "jobs": 4,
        "soon": 2,
        "limit": 5,
    }
    fields.update(overrides)
    return Prewarm(**fields)  # type: ignore[arg-type]


def step_run(**overrides: object) -> StepRun:
    fields: dict[str, object] = {
        "run_id": "20260507-101500.123-ab12",
        "step": "test",
        "image_id": IMAGE_ID,
        "commands": ("echo one",),
        "labels": {"io.parapipe.pipeline": "ci"},
    }
    return make_step_run(**{**fields, **overrides})


@pytest.mark.parametrize("keep", [False, True], ids=["rm", "kept"])
def test_a_pooled_container_is_created_as_a_step_container_but_for_its_command(
    keep: bool,
) -> None:
    # If run_argv gains a flag (a network, a user, a limit), this fails until the pool has it.
    # A step with outputs is `create`d, without `--rm`; its pooled container is kept too.
    run = step_run(outputs=("dist",) if keep else ())
    step_argv = argvs.run_argv("docker", run, "NAME", create=keep)
    pool_argv = argvs.pool_run_argv("docker", request(), "NAME", NONCE, keep=keep)

    assert step_argv[:2] == (["docker", "create"] if keep else ["docker", "run"])
    assert pool_argv[:3] == ["docker", "run", "-i"]
    image = step_argv.index(IMAGE_ID)
    assert step_argv[image + 1 :] == step_command(run.commands)
    assert pool_argv[pool_argv.index(IMAGE_ID) + 1 :] == [
        "sh",
        "-c",
        loader.LOADER,
        "parapipe",
        NONCE,
    ]
    step_flags = step_argv[2:image]
    pool_flags = pool_argv[3 : pool_argv.index(IMAGE_ID)]
    step_label = f"{LABEL_STEP}={run.step}"
    pool_label = f"{argvs.POOL_LABEL}=1"
    assert _without(step_flags, "--label", step_label) == _without(
        pool_flags, "--label", pool_label
    )
    assert ("--rm" in pool_flags) is not keep


def _without(flags: list[str], *pair: str) -> list[str]:
    at = flags.index(pair[1])
    return flags[: at - 1] + flags[at + 1 :]


def test_pool_container_names_never_meet_a_step_container_name() -> None:
    name = argvs.pool_container_name("20260507-101500.123-ab12", 2)
    assert name == "parapipe-20260507-101500.123-ab12.pool-2"
    # A step called `pool` on its second attempt:
    assert argvs.container_name("20260507-101500.123-ab12", "pool", 2) != name


def loaded(script: bytes, nonce: str = NONCE) -> subprocess.CompletedProcess[str]:
    """What the loader does with `script`, in the host's `sh`; stdout after the ready line."""
    done = subprocess.run(
        ["sh", "-c", loader.LOADER, "parapipe", nonce],
        input=script.decode(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin", "IMAGE_VAR": "from-image"},
    )
    ready, _, rest = done.stdout.partition("\n")
    assert ready.encode() == loader.READY_LINE
    return subprocess.CompletedProcess(done.args, done.returncode, rest, done.stderr)


def logged(output: str, nonce: str = NONCE) -> tuple[list[str], int | None]:
    """The log lines a pooled step's output gives, and the exit code its marker said."""
    lines: list[str] = []
    marker = loader.ExitMarker(nonce, lines.append)
    *complete, last = output.split("\n")
    for line in [*complete, *([last] if last else [])]:
        marker.log(line)
    marker.flush()
    return lines, marker.code


AWKWARD = 'it\'s "quoted" $HOME `id` \\n \\\\ $(echo no)\nsecond line\n\n  trailing  '


def test_the_loader_runs_the_step_command_with_the_step_env_exactly() -> None:
    run = step_run(
        commands=('printf "%s|" "$AWKWARD" "$EMPTY" "$IMAGE_VAR" "$SECRET"', "echo second"),
        env={"AWKWARD": AWKWARD, "EMPTY": ""},
        secrets={"SECRET": "hunter2 'x'"},
    )
    done = loaded(loader.step_script(run, NONCE))
    assert done.stderr == ""
    assert done.returncode == 0
    lines, code = logged(done.stdout)
    assert code == 0
    assert lines[0] == "$ " + run.commands[0]
    # printf leaves no line break: the next command's announcement follows on the same line.
    printed = "\n".join(lines[1:])
    assert printed == f"{AWKWARD}||from-image|hunter2 'x'|$ echo second\nsecond"


@pytest.mark.parametrize(
    "commands",
    [
        ("echo before", "echo err >&2; exit 7", "echo never"),
        ("printf no-line-end",),
        ("printf 'two blanks\\n\\n\\n'",),
        ("true",),
        ('sh -c "kill -9 \\$\\$"',),
    ],
)
def test_a_pooled_step_logs_and_exits_as_its_own_container_would(
    commands: tuple[str, ...],
) -> None:
    direct = subprocess.run(
        step_command(commands), capture_output=True, text=True, timeout=30, check=False
    )
    done = loaded(loader.step_script(step_run(commands=commands), NONCE))
    lines, code = logged(done.stdout)
    assert (code, done.returncode) == (direct.returncode, direct.returncode)
    assert lines == logged(direct.stdout)[0]
    assert done.stderr == direct.stderr == ""


def test_without_its_marker_the_log_keeps_every_line() -> None:
    # The shell was killed (a signal from outside): no marker, nothing held back.
    assert logged("a\n\nb\n\n") == (["a", "", "b", ""], None)
    assert logged(f"out\n{NONCE} 0 trailing\n") == (["out", f"{NONCE} 0 trailing"], None)


def test_the_loader_runs_nothing_without_its_nonce_line() -> None:
    script = loader.step_script(step_run(commands=("echo ran",)), NONCE)
    # Its CLI went away before the whole script got through: the container just ends.
    done = loaded(script.removesuffix(f"{NONCE}\n".encode()))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = loaded(script[: script.rindex(b"\n")])  # the nonce without its line's end
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    # Nor does a line that is not this container's nonce.
    done = loaded(script, nonce="another-nonce")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("change", "fits"),
    [
        ({}, True),
        ({"env": {"UID": "1000"}}, False),
        ({"env": {"PPID": "1"}}, False),
        ({"secrets": {"EUID": "0"}}, False),
        ({"secrets": {"TOKEN": "x"}}, True),
        ({"secrets": {"DOCKER_PASSWORD": "x"}}, True),  # on stdin, as every secret
        ({"env": {"has-dash": "x"}}, False),
        ({"env": {"PATH": "/x", "HOME": "/y", "_ok1": "z"}}, True),
        ({"image_id": "sha256:" + "b" * 64}, False),
        ({"workdir": "/elsewhere"}, False),
        ({"run_id": "another"}, False),
        ({"labels": {}}, False),
        ({"caches": (CacheVolume(name="v", pipeline="ci", cache="pip", path="/p"),)}, False),
        ({"keep_failed": True}, False),  # `run -i`: in a container of its own
        ({"services": (ServiceRun(name="db", image_id="i", commands=(), env={}),)}, False),
    ],
)
def test_which_steps_can_take_a_pooled_container(change: dict[str, object], fits: bool) -> None:
    assert docker_pool.can_take(step_run(**change), request()) is fits


def test_every_field_of_a_step_run_is_one_the_pool_knows_about() -> None:
    # A new field (a volume, a device, a user) may be something only `run` can set: decide in
    # `can_take` whether a pooled container can honour it, then add it here.
    known = {
        "run_id",
        "step",
        "image_id",
        "commands",
        "env",
        "workdir",
        "labels",
        "attempt",
        "inputs",
        "outputs",
        "outputs_dir",
        "secrets",
        "caches",
        "keep_failed",
        "services",
    }
    assert {field.name for field in dataclasses.fields(StepRun)} == known
