"""The image trusts what the host trusts: `pip install` works behind a TLS-inspecting proxy."""

from __future__ import annotations

import urllib.request

import pytest

from tests.helpers.docker import image_present
from tests.helpers.project import Project

pytestmark = pytest.mark.docker

PYTHON_IMAGE = "parapipe-seed/python3:bookworm"


@pytest.fixture(autouse=True)
def _needs_python_image_and_pypi() -> None:
    if not image_present(PYTHON_IMAGE):
        pytest.skip(f"{PYTHON_IMAGE} is not seeded (run scripts/seed-images)")
    try:
        urllib.request.urlopen("https://pypi.org/simple/six/", timeout=10).close()
    except OSError as exc:
        pytest.skip(f"PyPI is not reachable from this host: {exc}")


def spec(host_ca: bool) -> str:
    return f"""
        image:
          from: {PYTHON_IMAGE}
          host_ca: {"true" if host_ca else "false"}
          setup:
            - python3 -m venv /venv
            - /venv/bin/pip install --no-cache-dir --disable-pip-version-check six
        steps:
          check:
            run: /venv/bin/python -c 'import six; print("six", six.__version__)'
    """


def test_setup_installs_from_pypi_with_the_host_ca(project: Project) -> None:
    project.write_spec(spec(host_ca=True))
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", timeout=300)
    assert result.exit_code == 0, result.output
    assert "six 1." in (project.last_run() / "check.log").read_text()


def test_without_the_host_ca_a_tls_inspecting_proxy_breaks_pip(project: Project) -> None:
    project.write_spec(spec(host_ca=False))
    result = project.run("run", "-f", "ci.yaml", "--output", "plain", timeout=300)
    if result.exit_code == 0:
        pytest.skip("no TLS-inspecting proxy between this host and PyPI: nothing to show")
    assert result.exit_code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in (project.last_run() / "image.build.log").read_text()
