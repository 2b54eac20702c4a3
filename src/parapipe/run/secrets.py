"""Secrets: values a step gets in its environment and nowhere else.

A step names the secrets it needs (`secrets: [PYPI_TOKEN]`); their values come from
`--secret NAME=VALUE`, `--secret-file NAME=PATH` or, failing those, the host's environment. They
are resolved once per run, before any engine is contacted, so a missing one stops the run
before anything starts. What parapipe shows or keeps (step output, logs, reports, failure
reasons) passes through a `Redactor` that masks every value; the step cache keys on a
`fingerprint`, never on a value.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from parapipe.errors import SpecError, UsageError
from parapipe.model import Service, Step
from parapipe.spec.data import SECRET_NAME

MASK: Final = "***"
# Shorter values are not masked: masking `1` or `ab` would garble every log and report, and the
# masks' positions in known text would give the value away anyway.
MIN_MASKED_LENGTH: Final = 3

# PBKDF2 makes guessing a low-entropy value (a PIN, a short password) from a fingerprint slow;
# about 40 ms per secret and run, as fingerprints are memoised.
_FINGERPRINT_ITERATIONS: Final = 100_000
_FINGERPRINT_SALT: Final = b"parapipe secret fingerprint v1\0"


@functools.lru_cache(maxsize=256)
def fingerprint(name: str, value: str) -> str:
    """A stable hex digest of the secret `name` holding `value`, for the step cache's key: it
    changes when the value changes, and does not give the value away."""
    digest = hashlib.pbkdf2_hmac(
        "sha256", value.encode(), _FINGERPRINT_SALT + name.encode(), _FINGERPRINT_ITERATIONS
    )
    return digest.hex()


class Redactor:
    """Replaces every occurrence of every secret value with `***`.

    A value of several lines is also masked line by line, since output is handled one line at a
    time. Values (and lines) shorter than MIN_MASKED_LENGTH characters are left alone.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        pieces: set[str] = set()
        for value in values:
            pieces.add(value)
            pieces.update(line.removesuffix("\r") for line in value.split("\n"))
        kept = sorted((p for p in pieces if len(p) >= MIN_MASKED_LENGTH), key=len, reverse=True)
        # Longest first: where a whole value and one of its lines both match, the alternation
        # takes the whole value.
        self._pattern = re.compile("|".join(map(re.escape, kept))) if kept else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def __bool__(self) -> bool:
        return self._pattern is not None


class Secrets:
    """The values of the secrets a run's steps need, resolved before the run starts."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values: Mapping[str, str] = dict(values or {})
        self.redact = Redactor(self.values.values())
        # Worked out now, before the run, rather than on the event loop as steps start.
        self._fingerprints = {name: fingerprint(name, v) for name, v in self.values.items()}

    def __repr__(self) -> str:
        return f"Secrets({sorted(self.values)})"  # the names only

    def for_step(self, step: Step | Service) -> dict[str, str]:
        """`step`'s (or a service's) secrets by name, for its environment."""
        return {name: self.values[name] for name in step.secrets}

    def fingerprints(self, step: Step | Service) -> dict[str, str]:
        """`step`'s secrets by name, each as its `fingerprint`, for the step cache's key."""
        return {name: self._fingerprints[name] for name in step.secrets}


def resolve_secrets(
    steps: Iterable[Step | Service], given: Mapping[str, str], environ: Mapping[str, str]
) -> Secrets:
    """The values `steps` need: from `given` (the command line), else from `environ`.

    A secret that has no value, or an empty one, is a `SpecError` at the first step (or
    service) needing it.
    """
    values: dict[str, str] = {}
    for step in steps:
        missing: list[str] = []
        for name in step.secrets:
            value = given.get(name) or environ.get(name, "")
            if value:
                values[name] = value
            else:
                missing.append(name)
        if missing:
            raise SpecError(_missing_message(step, missing, environ), step.location)
    return Secrets(values)


def _missing_message(
    step: Step | Service, missing: Sequence[str], environ: Mapping[str, str]
) -> str:
    owner = f"service '{step.name}'" if isinstance(step, Service) else f"step '{step.name}'"

    def state(name: str) -> str:
        return "is empty" if name in environ else "is not set"

    if len(missing) == 1:
        name = missing[0]
        return (
            f"{owner} needs secret '{name}', which {state(name)}: set {name} in the"
            f" environment, or pass --secret {name}=VALUE or --secret-file {name}=PATH"
        )
    listed = ", ".join(f"'{name}' ({state(name).removeprefix('is ')})" for name in missing)
    return (
        f"{owner} needs secrets {listed}: set them in the environment, or pass"
        " --secret NAME=VALUE or --secret-file NAME=PATH for each"
    )


def parse_secret_flags(pairs: Sequence[str], files: Sequence[str]) -> dict[str, str]:
    """The values given by `--secret NAME=VALUE` and `--secret-file NAME=PATH`.

    A file's value is its text without one trailing newline. Messages never quote a value: a
    malformed flag may be a value typed without its name.
    """
    values: dict[str, str] = {}

    def add(flag: str, name: str, value: str) -> None:
        if name in values:
            raise UsageError(f"{flag}: secret '{name}' is given more than once")
        if not value:
            raise UsageError(f"{flag}: secret '{name}' is empty")
        if "\0" in value:
            raise UsageError(f"{flag}: secret '{name}' holds a NUL character")
        values[name] = value

    for pair in pairs:
        name, value = _split("--secret", pair, "NAME=VALUE")
        add("--secret", name, value)
    for pair in files:
        name, path = _split("--secret-file", pair, "NAME=PATH")
        add("--secret-file", name, _read_secret_file(name, Path(path)))
    return values


def _split(flag: str, pair: str, form: str) -> tuple[str, str]:
    name, equals, value = pair.partition("=")
    if not equals:
        raise UsageError(f"{flag} takes {form}; the argument given has no '='")
    if not SECRET_NAME.fullmatch(name):
        shown = name if len(name) <= 40 and name.isprintable() else "the name given"
        raise UsageError(
            f"{flag} takes {form}: '{shown}' is not a valid secret name"
            " (a letter or '_', then letters, digits and '_')"
        )
    return name, value


def _read_secret_file(name: str, path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"--secret-file {name}={path}: cannot read it: {exc.strerror or exc}"
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--secret-file {name}={path}: not UTF-8 text") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")
