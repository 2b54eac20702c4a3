"""The pipelines every engine must run alike, each with the one result every engine must give.

Busybox steps only, so the whole suite takes seconds per engine. A step's log is compared line
for line, up to the runner's own closing line (`parapipe: passed after 0.31s`, which holds a
duration).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from parapipe.model import Status
from tests.helpers.docker import BUSYBOX


@dataclass(frozen=True, kw_only=True)
class Conformance:
    name: str
    spec: str  # the spec after `name:`
    files: dict[str, str] = field(default_factory=dict)  # source files beside the spec
    keep_going: bool = False
    exit_code: int
    statuses: dict[str, Status]
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    image_failure: str | None = None  # the image's reason, when it fails to build
    # (before, after): `after` starts only once `before` has finished.
    order: tuple[tuple[str, str], ...] = ()
    # With the pool, some steps run in networks that holders lend (Docker, Podman).
    lends_networks: bool = False
    secrets: dict[str, str] = field(default_factory=dict)  # as `--secret NAME=VALUE`
    # Files the run's outputs leave on the host, relative to its artifacts folder.
    artifacts: dict[str, str] = field(default_factory=dict)


PASS = Conformance(
    name="pass",
    spec=f"""
image:
  from: {BUSYBOX}
  env: {{GREETING: hello}}
  setup: [echo built > /built]
steps:
  env:
    run: ['echo "$GREETING $STEP_VAR"', pwd]
    env: {{STEP_VAR: from-step}}
  files: {{run: [cat data.txt, cat /built, 'test ! -e .parapipe'], needs: [env]}}
  streams: {{run: 'echo out; echo err >&2; echo out2', needs: [env]}}
""",
    files={"data.txt": "data\n"},
    exit_code=0,
    statuses={"env": Status.PASSED, "files": Status.PASSED, "streams": Status.PASSED},
    exit_codes={"env": 0, "files": 0, "streams": 0},
    logs={
        "env": ['$ echo "$GREETING $STEP_VAR"', "hello from-step", "$ pwd", "/src"],
        "files": ["$ cat data.txt", "data", "$ cat /built", "built", "$ test ! -e .parapipe"],
        # stderr joins stdout in the container, so the order is the order written.
        "streams": ["$ echo out; echo err >&2; echo out2", "out", "err", "out2"],
    },
    # With needs, Docker and Podman run these steps in containers their pool started.
    order=(("env", "files"), ("env", "streams")),
)

FAIL = Conformance(
    name="fail",
    spec=f"""
image: {{from: {BUSYBOX}}}
steps:
  ok: {{run: "true"}}
  bad: {{run: [echo before, exit 3, echo never], needs: [ok]}}
  after: {{run: echo after, needs: [bad]}}
""",
    exit_code=1,
    statuses={"ok": Status.PASSED, "bad": Status.FAILED, "after": Status.SKIPPED},
    exit_codes={"ok": 0, "bad": 3, "after": None},
    logs={"ok": ["$ true"], "bad": ["$ echo before", "before", "$ exit 3", "parapipe: exit 3"]},
    reasons={"bad": "exit code 3", "after": "needs 'bad', which failed"},
    order=(("ok", "bad"),),
)

DIAMOND = Conformance(
    name="diamond",
    spec=f"""
image: {{from: {BUSYBOX}}}
steps:
  top: {{run: echo top}}
  left: {{run: echo left, needs: [top]}}
  right: {{run: echo right, needs: [top]}}
  bottom: {{run: echo bottom, needs: [left, right]}}
""",
    exit_code=0,
    statuses=dict.fromkeys(("top", "left", "right", "bottom"), Status.PASSED),
    exit_codes=dict.fromkeys(("top", "left", "right", "bottom"), 0),
    logs={name: [f"$ echo {name}", name] for name in ("top", "left", "right", "bottom")},
    order=(("top", "left"), ("top", "right"), ("left", "bottom"), ("right", "bottom")),
)

KEEP_GOING = Conformance(
    name="keep-going",
    # A step killed by a signal exits 137: Dagger raises for exits 128-191 even when any exit
    # is expected, and that must still read as the step failing.
    spec=f"""
image: {{from: {BUSYBOX}}}
steps:
  killed: {{run: [echo dying, 'kill -9 $$']}}
  dependent: {{run: echo dependent, needs: [killed]}}
  independent: {{run: echo independent}}
  later: {{run: echo later, needs: [independent]}}
""",
    keep_going=True,
    exit_code=1,
    statuses={
        "killed": Status.FAILED,
        "dependent": Status.SKIPPED,
        "independent": Status.PASSED,
        "later": Status.PASSED,
    },
    exit_codes={"killed": 137, "dependent": None, "independent": 0, "later": 0},
    logs={
        # "Killed" is busybox sh reporting its child's signal.
        "killed": ["$ echo dying", "dying", "$ kill -9 $$", "Killed", "parapipe: exit 137"],
        "independent": ["$ echo independent", "independent"],
        "later": ["$ echo later", "later"],
    },
    reasons={"killed": "exit code 137", "dependent": "needs 'killed', which failed"},
    order=(("independent", "later"),),
)

SETUP_FAILS = Conformance(
    name="setup-fails",
    spec=f"""
image:
  from: {BUSYBOX}
  setup: [echo setting up, exit 4]
steps:
  a: {{run: echo a}}
""",
    exit_code=1,
    statuses={"a": Status.SKIPPED},
    exit_codes={"a": None},
    reasons={"a": "the pipeline image failed to build"},
    image_failure="setup command 2 `exit 4` failed with exit 4",
)

# `image.prepare` sees only the files it names (not app.txt); `image.caches` is mounted while
# prepare and setup run, and is not in the image the steps get.
PREPARE = Conformance(
    name="prepare",
    spec=f"""
image:
  from: {BUSYBOX}
  prepare:
    files: [deps.txt]
    run: ['ls > /prepared-saw', 'cp deps.txt /cache/deps', 'echo "$PREP" > /prepared-env']
    env: {{PREP: prep-only}}
  setup: ['cat /cache/deps > /setup-saw']
  caches: {{c: /cache}}
steps:
  check:
    run: [cat /prepared-saw, cat /prepared-env, cat /setup-saw, 'test ! -e /cache/deps', 'echo "[$PREP]"']
  after: {{run: 'true', needs: [check]}}
""",
    files={"deps.txt": "dep-1\n", "app.txt": "app\n"},
    exit_code=0,
    statuses={"check": Status.PASSED, "after": Status.PASSED},
    logs={
        "check": [
            "$ cat /prepared-saw",
            "deps.txt",
            "$ cat /prepared-env",
            "prep-only",
            "$ cat /setup-saw",
            "dep-1",
            # Buildah leaves no mount point behind, BuildKit an empty one: only the content counts.
            "$ test ! -e /cache/deps",
            '$ echo "[$PREP]"',
            "[]",
        ],
    },
)

# Every step holds TCP port 8000 while it runs and fails if another process of its network holds
# it already: two steps that run at the same time must not share a network.
_HOLDS_PORT = "nc -l -p 8000 & listener=$!; sleep 0.3; kill -0 $listener; kill $listener"
_PORT_STEPS = [f"p{i:02d}" for i in range(16)]

PORTS = Conformance(
    name="ports",
    spec=f"""
image:
  from: {BUSYBOX}
steps:
"""
    + "".join(f"  {name}: {{run: {_HOLDS_PORT!r}}}\n" for name in _PORT_STEPS),
    exit_code=0,
    statuses=dict.fromkeys(_PORT_STEPS, Status.PASSED),
    exit_codes=dict.fromkeys(_PORT_STEPS, 0),
    lends_networks=True,
)

MATRIX = Conformance(
    name="matrix",
    spec=f"""
image: {{from: {BUSYBOX}}}
steps:
  t:
    run: [mkdir -p out, 'echo "$A-$B" > out/f']
    matrix: {{A: [1, 2], B: [x], include: [{{A: 3, B: y}}]}}
    outputs: [out]
  join: {{run: 'cat t/A=1,B=x/out/f t/A=2,B=x/out/f t/A=3,B=y/out/f', needs: [t]}}
""",
    exit_code=0,
    statuses={
        "t[A=1,B=x]": Status.PASSED,
        "t[A=2,B=x]": Status.PASSED,
        "t[A=3,B=y]": Status.PASSED,
        "join": Status.PASSED,
    },
    logs={"join": ["$ cat t/A=1,B=x/out/f t/A=2,B=x/out/f t/A=3,B=y/out/f", "1-x", "2-x", "3-y"]},
    order=(("t[A=1,B=x]", "join"), ("t[A=2,B=x]", "join"), ("t[A=3,B=y]", "join")),
)

# What crosses between the host and a step's container, none of it through a host path: outputs
# copied out and into the steps that need them, secrets on stdin, a cache volume two steps share.
_SECRET = "s3cret-value"
DATA = Conformance(
    name="data",
    spec=f"""
image:
  from: {BUSYBOX}
steps:
  make:
    run: ['mkdir -p out && echo made > out/a.txt', 'echo "token is $TOKEN"']
    outputs: [out/]
    secrets: [TOKEN]
  use:
    run: [cat out/a.txt, 'test "$TOKEN" = {_SECRET} && echo has-token']
    secrets: [TOKEN]
    needs: [make]
  fill: {{run: 'echo kept > /cache/f', caches: {{c: /cache}}}}
  read: {{run: cat /cache/f, caches: {{c: /cache}}, needs: [fill]}}
""",
    secrets={"TOKEN": _SECRET},
    exit_code=0,
    statuses=dict.fromkeys(("make", "use", "fill", "read"), Status.PASSED),
    logs={
        "make": [
            "$ mkdir -p out && echo made > out/a.txt",
            '$ echo "token is $TOKEN"',
            "token is ***",
        ],
        "use": ["$ cat out/a.txt", "made", '$ test "$TOKEN" = *** && echo has-token', "has-token"],
        "read": ["$ cat /cache/f", "kept"],
    },
    order=(("make", "use"), ("fill", "read")),
    artifacts={"make/out/a.txt": "made\n"},
)

# Two steps at once, each beside a key-value service of its own that it writes to and reads
# back (each passes only if it reads its own write alone), and one whose service is never ready.
# Each step sends its name until the service has it (the listener may not be up at the first
# try, and readiness only asks its web server), then passes only if it reads its own name alone.
_KV_STEP = """
    run: |
      for i in $(seq 50); do
        echo {name} | nc -w 1 kv 7000 || true
        seen=$(wget -q -O- http://kv:8080/data)
        [ -z "$seen" ] || break
        sleep 0.2
      done
      test "$(echo "$seen" | sort -u)" = {name}
    services: [kv]"""
SERVICES = Conformance(
    name="services",
    spec=f"""
image: {{from: {BUSYBOX}}}
services:
  kv:
    run: ["mkdir -p /www && touch /www/data", "httpd -p 8080 -h /www",
          "while true; do nc -l -p 7000 >> /www/data; done"]
    # By its own name, which works inside it (Docker, Podman) and beside it (Dagger).
    ready: {{run: "wget -q -O /dev/null http://kv:8080/data", interval: 100ms}}
  slow: {{run: sleep 600, ready: {{run: "false", timeout: 1s, interval: 100ms}}}}
steps:
  left:{_KV_STEP.format(name="left")}
  right:{_KV_STEP.format(name="right")}
  waits: {{run: echo never, services: [slow]}}
""",
    keep_going=True,
    exit_code=1,
    statuses={"left": Status.PASSED, "right": Status.PASSED, "waits": Status.FAILED},
    exit_codes={"left": 0, "right": 0, "waits": None},
    reasons={"waits": "service 'slow' was not ready after 1s"},
)

ALL = (PASS, FAIL, DIAMOND, KEEP_GOING, SETUP_FAILS, PREPARE, PORTS, MATRIX, DATA, SERVICES)
