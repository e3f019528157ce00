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


def test_workflow_runs_make_test_then_the_engine_tests_on_a_docker_runner():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    test_steps = " ".join(step.get("run", "") for step in jobs["test"]["steps"])
    assert "make test" in test_steps
    engine = jobs["engine"]
    assert engine["needs"] == "test" and engine["runs-on"].startswith("ubuntu")
    runs = [step.get("run", "") for step in engine["steps"]]
    assert any("docker info" in run for run in runs), "fail, not skip, without an engine"
    assert any("pytest -m engine" in run for run in runs)


def test_ci_installs_docker_compose_without_an_engine_and_the_readme_says_so():
    ci = (REPO / ".ci" / "run").read_text()
    install = [line for line in ci.splitlines() if "install" in line and "docker-compose" in line]
    assert install and all("--no-install-recommends" in line for line in install)
    assert ci.index("docker-compose") < ci.index("make test")
    section = (REPO / "docs" / "images.md").read_text()
    assert "docker-compose" in section and "--no-install-recommends" in section
