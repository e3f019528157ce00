"""The CLI and the Makefile targets: every step has help and a make target that calls it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cfn import REPO

STEPS = ("bootstrap", "images", "preview", "deploy", "roll", "teardown", "wake-check")

@pytest.mark.parametrize("step", STEPS)
def test_every_step_has_help(step):
    result = subprocess.run([sys.executable, "-m", "tools.deploy", step, "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m tools.deploy {step} ")
    assert "ENV" in result.stdout and "--region" in result.stdout

def test_top_level_help_lists_every_step():
    result = subprocess.run([sys.executable, "-m", "tools.deploy", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for step in STEPS:
        assert step in result.stdout

@pytest.mark.parametrize("step", STEPS)
def test_make_targets_call_the_step(step):
    result = subprocess.run(["make", "-n", step, "ENV=dev"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"-m tools.deploy {step} dev" in result.stdout

def test_make_targets_need_an_env():
    result = subprocess.run(["make", "-n", "deploy"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "ENV=" in result.stderr

def test_make_deploy_passes_an_explicit_image_tag():
    result = subprocess.run(["make", "-n", "deploy", "ENV=dev", "IMAGE_TAG=abc123"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert "--image-tag abc123" in result.stdout


def test_wake_check_help_says_it_has_not_run_against_aws():
    result = subprocess.run([sys.executable, "-m", "tools.deploy", "wake-check", "--help"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "NOT run against AWS" in " ".join(result.stdout.split())
