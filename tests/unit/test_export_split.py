"""`export github --split` builds the image once: the image job, the needs wiring that puts it
before every step job, how each step job gets the image, and actionlint's verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from parapipe.cli import main
from parapipe.git.github_split import CACHE, LOGIN, STEP_CACHE, split_workflow
from parapipe.spec.load import load_pipeline
from tests.unit.test_export_github import check_with_actionlint

SPEC = """\
name: "my app"
image: {from: busybox:latest}
steps:
  build: {run: make, outputs: [dist/]}
  lint: {run: make lint}
  unit: {run: make test, needs: [build]}
  package: {run: make dist, needs: [unit, lint], secrets: [TOKEN]}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    path = repo / "ci" / "pipeline.yaml"
    path.parent.mkdir()
    path.write_text(SPEC)
    return path


def jobs_of(text: str) -> dict[str, Any]:
    jobs: dict[str, Any] = yaml.safe_load(text)["jobs"]
    return jobs


def step_names(job: dict[str, Any]) -> list[str]:
    return [step.get("name", step.get("uses", "")) for step in job["steps"]]


@pytest.mark.parametrize("registry", ["", "ghcr.io/owner/repo"])
def test_every_step_job_needs_the_image_job_and_its_own_needs(
    spec: Path, tmp_path: Path, registry: str
) -> None:
    pipeline = load_pipeline(spec)
    text = split_workflow(pipeline, install="pip install -e .", registry=registry)
    jobs = jobs_of(text)
    assert list(jobs) == ["image", *pipeline.steps]
    assert "needs" not in jobs["image"]
    # The wiring covers every step: each step has a job, needing the image and its own needs.
    assert {name: job["needs"] for name, job in jobs.items() if name != "image"} == {
        name: ["image", *step.needs] for name, step in pipeline.steps.items()
    }
    for name in pipeline.steps:
        names = step_names(jobs[name])
        run_at = names.index(f"Run {name}")
        got_image = "Pull the pipeline image" if registry else "Get the pipeline image"
        assert names.index(got_image) < run_at
        assert names.index(f"Step cache of {name}") < run_at
        (run,) = [s for s in jobs[name]["steps"] if s.get("name") == f"Run {name}"]
        assert f" {name} --no-deps " in run["run"]
    check_with_actionlint(tmp_path, text)


def test_the_artifact_form_saves_once_and_loads_in_each_step_job(spec: Path) -> None:
    jobs = jobs_of(split_workflow(load_pipeline(spec)))
    image = jobs["image"]
    commands = [s["run"] for s in image["steps"] if "run" in s]
    assert "parapipe image build -f ci/pipeline.yaml\n" in commands[1]
    assert 'echo "tag=$tag" >> "$GITHUB_OUTPUT"' in commands[1]
    assert commands[2].startswith("parapipe image save -f ci/pipeline.yaml -o ")
    assert "${{ runner.temp }}" in commands[2]  # never in the checkout: it would be a source file
    assert image["outputs"] == {"tag": "${{ steps.image.outputs.tag }}"}
    assert "permissions" not in image  # the workflow's contents: read is enough
    for name in ("build", "package"):
        loads = [s["run"] for s in jobs[name]["steps"] if "image load" in s.get("run", "")]
        assert loads == [
            'parapipe image load -f ci/pipeline.yaml "${{ runner.temp }}/parapipe-image.tar.zst"\n'
        ]
        builds = [s for s in jobs[name]["steps"] if "image build" in s.get("run", "")]
        assert builds == []


def test_the_step_cache_is_kept_by_image_tag_and_step(spec: Path) -> None:
    jobs = jobs_of(split_workflow(load_pipeline(spec)))
    (cache,) = [s for s in jobs["unit"]["steps"] if s.get("uses") == CACHE]
    assert cache["with"]["path"] == STEP_CACHE
    prefix = "parapipe-my-app-unit-${{ needs.image.outputs.tag }}-"
    assert cache["with"]["key"] == prefix + "${{ hashFiles('ci/pipeline.yaml') }}"
    assert cache["with"]["restore-keys"] == prefix


def test_the_registry_form_pushes_with_write_permission_only_in_the_image_job(spec: Path) -> None:
    jobs = jobs_of(split_workflow(load_pipeline(spec), registry="ghcr.io/owner/repo"))
    image = jobs["image"]
    assert image["permissions"] == {"contents": "read", "packages": "write"}
    logins = [s for s in image["steps"] if s.get("uses") == LOGIN]
    assert logins[0]["with"]["registry"] == "ghcr.io"
    assert logins[0]["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
    (push,) = [s for s in image["steps"] if s.get("name") == "Build the pipeline image and push it"]
    assert push["env"] == {"REMOTE": "ghcr.io/owner/repo/my-app"}
    assert 'docker push "$REMOTE:$hash"' in push["run"]
    assert 'docker tag busybox:latest "$REMOTE:$hash-base"' in push["run"]
    assert not any("image save" in s.get("run", "") for s in image["steps"])
    for name in ("build", "lint", "unit", "package"):
        job = jobs[name]
        assert job["permissions"] == {"contents": "read", "packages": "read"}
        (pull,) = [s for s in job["steps"] if s.get("name") == "Pull the pipeline image"]
        assert pull["env"]["TAG"] == "${{ needs.image.outputs.tag }}"
        assert "parapipe image id -f ci/pipeline.yaml" in pull["run"]  # checked, never trusted
        assert not any(
            s.get("uses", "").startswith("actions/download-artifact")
            and s["with"]["name"] == "parapipe-image"
            for s in job["steps"]
        )


def test_a_step_called_image_leaves_the_image_job_another_id(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    path = repo / "ci.yaml"
    path.write_text("image: {from: busybox:latest}\nsteps:\n  image: {run: make}\n")
    text = split_workflow(load_pipeline(path))
    jobs = jobs_of(text)
    assert list(jobs) == ["parapipe-image", "image"]
    assert jobs["image"]["needs"] == ["parapipe-image"]
    check_with_actionlint(tmp_path, text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--registry", "ghcr.io/owner/repo"], "--registry goes with --split"),
        (["--split", "--registry", "ghcr.io/Owner/repo"], "in lower case"),
        (["--split", "--registry", "ghcr.io/owner/repo:tag"], "without a tag"),
    ],
)
def test_a_bad_registry_is_one_line_and_exit_2(
    spec: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["export", "github", "-f", str(spec), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_base_built_from_a_dockerfile_has_no_tag_to_push(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "Dockerfile").write_text("FROM busybox:latest\n")
    path = repo / "ci.yaml"
    path.write_text("image: {build: .}\nsteps:\n  a: {run: make}\n")
    text = split_workflow(load_pipeline(path), registry="ghcr.io/owner/repo")
    jobs = jobs_of(text)
    (push,) = [
        s for s in jobs["image"]["steps"] if s.get("name") == "Build the pipeline image and push it"
    ]
    assert "-base" not in push["run"]
    (pull,) = [s for s in jobs["a"]["steps"] if s.get("name") == "Pull the pipeline image"]
    assert "-base" not in pull["run"]
    check_with_actionlint(tmp_path, text)


def test_a_matrix_job_needs_the_image_and_keeps_a_step_cache_per_instance(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    path = repo / "pipeline.yaml"
    path.write_text(
        "name: m\nimage: {from: busybox:latest}\nsteps:\n"
        "  build: {run: make}\n"
        "  test: {run: make test, needs: [build], matrix: {SHARD: ['0', '1']}}\n"
        "  report: {run: make report, needs: [test]}\n"
    )
    text = split_workflow(load_pipeline(path), install="pip install -e .")
    jobs = jobs_of(text)
    assert list(jobs) == ["image", "build", "test", "report"]
    assert jobs["test"]["needs"] == ["image", "build"]
    assert jobs["report"]["needs"] == ["image", "test"]
    [cache] = [step for step in jobs["test"]["steps"] if step.get("uses") == CACHE]
    # Under one key only the first instance to finish would be kept, and restored by all.
    assert "${{ strategy.job-index }}" in cache["with"]["key"]
    assert cache["with"]["restore-keys"].endswith("-")
    check_with_actionlint(tmp_path, text)


def test_a_matrix_job_pulls_its_services_images_and_passes_their_secrets(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    path = repo / "pipeline.yaml"
    path.write_text(
        "name: m\nimage: {from: busybox:latest}\n"
        "services:\n  db: {image: 'example/postgres:15', secrets: [DB_PASSWORD]}\n"
        "steps:\n"
        "  test: {run: make test, services: [db], matrix: {SHARD: ['0', '1']}}\n"
    )
    text = split_workflow(load_pipeline(path), install="pip install -e .")
    job = jobs_of(text)["test"]
    [pull] = [step for step in job["steps"] if step.get("name") == "Pull the services' images"]
    assert "example/postgres:15" in pull["run"]
    [run] = [step for step in job["steps"] if step.get("name") == "Run test"]
    assert run["env"]["DB_PASSWORD"] == "${{ secrets.DB_PASSWORD }}"
    check_with_actionlint(tmp_path, text)
