"""Repository plumbing: the pre-commit hooks, the CI entry point, the README's commands."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from tests.cfn import REPO

BIN = Path(sys.executable).parent


def hooks():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def test_pre_commit_config_is_valid():
    env = {**os.environ, "PRE_COMMIT_HOME": "/tmp/pre-commit-home"}
    result = subprocess.run([str(BIN / "pre-commit"), "validate-config"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pre_commit_runs_the_generator_check_and_cfn_lint_locally():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    assert all(repo["repo"] == "local" for repo in config["repos"])
    entries = {hook["id"]: hook["entry"] for hook in hooks()}
    assert entries["templates-current"] == ".venv/bin/python generate.py --check"
    assert entries["cfn-lint"] == ".venv/bin/cfn-lint"


def test_pre_commit_hook_commands_pass_on_this_tree():
    for hook in hooks():
        if hook.get("pass_filenames", True):
            continue
        command = shlex.split(hook["entry"])
        command[0] = str(BIN / Path(command[0]).name)
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{hook['id']}: {result.stdout}{result.stderr}"


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line and not line.startswith("#")]
    assert "make test" in commands
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make generate" in quick_start and "make test" in quick_start
    assert quick_start.index("make generate") < quick_start.index("make test")


def test_readme_has_a_topology_diagram_naming_every_layer():
    readme = (REPO / "README.md").read_text()
    mermaid = readme.split("```mermaid", 1)[1].split("```", 1)[0]
    for word in ("ALB", "gateway", "ollama", "11434", "8000", "NAT", "capacity provider"):
        assert word.lower() in mermaid.lower(), word
