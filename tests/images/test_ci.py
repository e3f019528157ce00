"""CI plumbing of the image checks: the GitHub workflow, .ci/run's system packages, the README."""

from __future__ import annotations

import subprocess

import yaml

from tests.images.common import BIN, REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def test_workflow_matches_the_github_workflow_schema():
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", str(WORKFLOW)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_runs_make_test_then_the_engine_tests_on_the_private_engine():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    test_steps = " ".join(step.get("run", "") for step in jobs["test"]["steps"])
    assert "make test" in test_steps
    engine = jobs["engine"]
    assert engine["needs"] == "test" and engine["runs-on"].startswith("ubuntu")
    steps = engine["steps"]
    runs = [step.get("run", "") for step in steps]
    start = next(i for i, run in enumerate(runs) if "-m tests.images.engine start" in run)
    tests = next(i for i, run in enumerate(runs) if "pytest -m engine" in run)
    stop = next(i for i, run in enumerate(runs) if "-m tests.images.engine stop" in run)
    assert start < tests < stop, "start (fails, not skips, without an engine), test, stop"
    assert steps[stop].get("if") == "always()", "the engine stops also when a test failed"
    assert not any(run.lstrip().startswith("docker ") for run in runs), "the runner's Docker"
    installs = " ".join(run for run in runs if "apt-get install" in run)
    assert "debootstrap" in installs and "--no-install-recommends" in installs


def test_make_test_runs_pytest_under_the_private_engine():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "$(PY) -m tests.images.engine run -- $(PY) -m pytest" in recipe, recipe


def test_ci_installs_the_engine_and_debootstrap_from_debian_when_missing():
    ci = (REPO / ".ci" / "run").read_text()
    install = [line for line in ci.splitlines() if "install" in line and "docker.io" in line]
    assert install and all("--no-install-recommends" in line and "debootstrap" in line
                           for line in install)
    assert "command -v dockerd" in ci and "command -v debootstrap" in ci
    assert ci.index("docker.io") < ci.index("make test")


def test_ci_installs_docker_compose_without_an_engine_and_the_readme_says_so():
    ci = (REPO / ".ci" / "run").read_text()
    install = [line for line in ci.splitlines() if "install" in line and "docker-compose" in line]
    assert install and all("--no-install-recommends" in line for line in install)
    assert ci.index("docker-compose") < ci.index("make test")
    section = (REPO / "docs" / "images.md").read_text()
    assert "docker-compose" in section and "--no-install-recommends" in section
