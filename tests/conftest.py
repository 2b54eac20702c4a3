"""Shared fixtures: a throwaway project with a spec, and the backend async tests run on.

Helpers the tests call themselves live in tests/helpers/, never in a conftest or a test module.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.docker import (
    BUSYBOX,
    docker_answers,
    image_present,
    remove_pipeline_images,
    remove_podman_images_of,
)
from tests.helpers.project import Project

# Session fixtures that live with their helpers (pytest takes plugins from the root conftest only).
pytest_plugins = ("tests.helpers.isolated_engine",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("docker") for item in items):
        return
    if not docker_answers():
        reason = "no Docker daemon answers (run scripts/setup, which starts one)"
    elif not image_present(BUSYBOX):
        reason = f"{BUSYBOX} is not seeded (run scripts/seed-images)"
    else:
        return
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: the engines run on it, and trio is not installed."""
    return "asyncio"


_PROJECTS: list[str] = []  # every project's pipeline name, for the sweep of Podman's images


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    _PROJECTS.append(name)
    yield Project(root=tmp_path, name=name)
    remove_pipeline_images(name)


@pytest.fixture(scope="session", autouse=True)
def _podman_images_of_the_projects_go() -> Iterator[None]:
    """Tests that run a project on Podman leave its images (and source stages) in Podman's
    store: one look at the end removes them, instead of a podman call after every test."""
    yield
    if _PROJECTS and shutil.which("podman") is not None:
        remove_podman_images_of(_PROJECTS)
