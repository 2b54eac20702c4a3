"""The Podman probe of scripts/setup, against a fake `podman` that answers as crun and runc do on
a host with hybrid cgroups and low hard limits: no such host is needed to test it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from parapipe.engine.docker import podman_setup
from parapipe.engine.docker.podman_setup import Choice, NoWay, Refusal, classify, probe

# The runtimes' own words, as seen on Debian 12 with podman 4.3.1, crun 1.8.1 and runc 1.1.
CRUN_RLIMIT = (
    "Error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied"
)
CRUN_HYBRID = (
    "Error: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers"
    " from cgroupv2"
)
RUNC_RLIMIT = (
    "Error: runc: runc create failed: unable to start container process: error during container"
    " init: error setting rlimits for ready process: error setting rlimit type {type}: operation"
    " not permitted: OCI permission denied"
)

FAKE_PODMAN = textwrap.dedent(
    '''\
    #!{python}
    """A podman that behaves as crun and runc do on a host with hybrid cgroups."""
    import json, os, sys
    host = json.loads(os.environ["FAKE_HOST"])
    args = sys.argv[1:]
    with open(os.environ["FAKE_CALLS"], "a") as calls:
        calls.write(" ".join(args) + "\\n")
    runtime = host["default"]
    if args[:1] == ["--runtime"]:
        runtime, args = args[1], args[2:]
    if args[:1] == ["info"]:
        print(host["default"])
        sys.exit(0)
    limits = {{"nofile": 1048576, "nproc": 1048576}}
    for i, arg in enumerate(args):
        if arg == "--ulimit":
            name, value = args[i + 1].split("=")
            limits[name] = int(value.split(":")[0])
    if runtime not in host["installed"]:
        print(f"Error: default OCI runtime {{runtime}} not found", file=sys.stderr)
        sys.exit(125)
    for name, number in (("nofile", 7), ("nproc", 6)):
        if limits[name] > host["max"][name]:
            if runtime == "crun":
                print(f"Error: crun: setrlimit `RLIMIT_{{name.upper()}}`: Operation not permitted:"
                      " OCI permission denied", file=sys.stderr)
            else:
                print(f"Error: runc: runc create failed: error setting rlimit type {{number}}:"
                      " operation not permitted: OCI permission denied", file=sys.stderr)
            sys.exit(126)
    if runtime == "crun" and host["hybrid"]:
        print("Error: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all"
              " controllers from cgroupv2", file=sys.stderr)
        sys.exit(126)
    if host["broken"]:
        print("Error: something else entirely", file=sys.stderr)
        sys.exit(126)
    sys.exit(0)
    '''
)

LADDERS = {"nofile": [20000, 4096, 1024], "nproc": [96362, 32768, 4096, 1024]}


def fake_podman(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    default: str = "crun",
    installed: tuple[str, ...] = ("crun", "runc"),
    hybrid: bool = True,
    nofile: int = 20000,
    nproc: int = 32768,
    broken: bool = False,
) -> tuple[list[str], Path]:
    """A fake podman on disk (its argv, and the file its calls are written to)."""
    import json

    script = tmp_path / "podman"
    script.write_text(FAKE_PODMAN.format(python=sys.executable))
    script.chmod(0o755)
    calls = tmp_path / "calls.txt"
    host = {
        "default": default,
        "installed": list(installed),
        "hybrid": hybrid,
        "max": {"nofile": nofile, "nproc": nproc},
        "broken": broken,
    }
    monkeypatch.setenv("FAKE_HOST", json.dumps(host))
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    return [str(script)], calls


def test_crun_refusing_hybrid_cgroups_chooses_runc_with_limits_it_may_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman, calls = fake_podman(tmp_path, monkeypatch)
    found = probe(podman, ladders=LADDERS)
    assert isinstance(found, Choice), found
    assert found.runtime == "runc"
    assert found.ulimits == (("nofile", 20000), ("nproc", 32768))
    assert "crun (podman's default): cgroups in hybrid mode not supported" in found.why
    assert "runc was refused nofile and nproc ulimits" in found.why
    # crun (the default) was given up at its first refusal that was the runtime's, not a limit's:
    # its defaults, the host's limits, nproc lowered, and no more.
    runs = [line for line in calls.read_text().splitlines() if "run --rm" in line]
    assert [line.startswith("--runtime runc") for line in runs] == [False] * 3 + [True] * 3


def test_runc_refused_its_limits_lowers_them_one_refusal_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman, _ = fake_podman(tmp_path, monkeypatch, default="runc", nofile=4096, nproc=1024)
    found = probe(podman, ladders=LADDERS)
    assert found == Choice(
        None,
        (("nofile", 4096), ("nproc", 1024)),
        "runc (podman's default) was refused nofile and nproc ulimits",
    )
    drop_in = found.drop_in()
    assert "[engine]" not in drop_in
    assert 'default_ulimits = ["nofile=4096:4096", "nproc=1024:1024"]' in drop_in


def test_defaults_that_work_need_no_drop_in_and_remove_an_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman, _ = fake_podman(tmp_path, monkeypatch, default="runc", nofile=2**21, nproc=2**21)
    found = probe(podman, ladders=LADDERS)
    assert found == Choice(None, (), "podman's defaults start a container")
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "parapipe-ulimits.conf").write_text("old")
    assert podman_setup.write_drop_in(found, conf) is None
    assert list(conf.iterdir()) == []


def test_nothing_that_works_says_so_in_one_line_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman, _ = fake_podman(tmp_path, monkeypatch, installed=("crun",))
    found = probe(podman, ladders=LADDERS)
    assert isinstance(found, NoWay)
    assert found.why.startswith("podman cannot start a container here: ")
    assert "cgroups in hybrid mode not supported" in found.why
    assert "runc: default OCI runtime runc not found" in found.why
    assert "\n" not in found.why


def test_a_refusal_at_the_lowest_limit_gives_that_runtime_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman, _ = fake_podman(tmp_path, monkeypatch, default="runc", installed=("runc",), nofile=512)
    found = probe(podman, ladders=LADDERS)
    assert isinstance(found, NoWay)
    assert "runc (podman's default) was refused nofile=1024, the lowest tried" in found.why


def test_the_command_writes_the_drop_in_podman_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman, _ = fake_podman(tmp_path, monkeypatch)
    conf = tmp_path / "conf.d"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "parapipe.engine.docker.podman_setup",
            "--podman",
            podman[0],
            "--write",
            str(conf),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("setup: podman uses runc with nofile=")
    assert str(conf / "parapipe.conf") in line
    text = (conf / "parapipe.conf").read_text()
    assert '[engine]\nruntime = "runc"\n[containers]\ndefault_ulimits = ["nofile=' in text


def test_the_command_fails_in_one_line_where_nothing_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman, _ = fake_podman(
        tmp_path, monkeypatch, default="runc", hybrid=False, nofile=2**21, nproc=2**21, broken=True
    )
    done = subprocess.run(
        [sys.executable, "-m", "parapipe.engine.docker.podman_setup", "--podman", podman[0]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line == (
        "setup: podman cannot start a container here: runc (podman's default): something else"
        " entirely; crun: something else entirely"
    )


@pytest.mark.parametrize(
    ("said", "kind"),
    [
        (CRUN_RLIMIT, Refusal.RLIMIT),
        (RUNC_RLIMIT.format(type=7), Refusal.RLIMIT),
        (RUNC_RLIMIT.format(type=6), Refusal.RLIMIT),
        (CRUN_HYBRID, Refusal.RUNTIME),
        ("Error: no such image", Refusal.OTHER),
    ],
)
def test_both_runtimes_wordings_are_recognised(said: str, kind: Refusal) -> None:
    assert classify(said) is kind


def test_limit_names_in_both_wordings() -> None:
    assert podman_setup.refused_limit(CRUN_RLIMIT) == "nofile"
    assert podman_setup.refused_limit(RUNC_RLIMIT.format(type=6)) == "nproc"
