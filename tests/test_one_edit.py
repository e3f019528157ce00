"""Changes that must be one edit (plus `make generate`), made on a temporary copy of the repo.

Each test copies the tracked files, makes the one edit, and runs the checks that matter for it
as a user would (subprocesses in the copy), so a second place that also needs editing fails it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture
def copy(tmp_path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True,
                           text=True).stdout.split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tmp_path / name)
    # Fetched tools (cfn-guard and its rules, checksum-verified) and the venvs are not source.
    for cached in (".cache/cfn-guard", ".venv-checkov"):
        if (REPO / cached).exists():
            (tmp_path / cached).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / cached).symlink_to(REPO / cached)
    return tmp_path


def run(copy: Path, *argv: str, timeout: float = 300) -> str:
    result = subprocess.run([sys.executable, *argv], cwd=copy, capture_output=True, text=True,
                            timeout=timeout, check=False,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


def test_a_staging_environment_is_a_copy_of_the_prod_params_file(copy):
    shutil.copy2(copy / "params" / "prod.json", copy / "params" / "staging.json")

    run(copy, "generate.py")  # the generated docs gain a staging column: nothing else to edit
    run(copy, "generate.py", "--check")
    assert "| staging |" in (copy / "docs" / "parameters.md").read_text()
    assert "staging" in run(copy, "-m", "tools.rollout")
    run(copy, "-m", "tools.render", "--env", "staging", "--out", str(copy / "rendered"))
    gate = run(copy, "-m", "tools.security_gate", "--env", "staging", timeout=600)
    assert "PASSED" in gate
    assert "staging" in run(copy, "-m", "tools.deploy", "deploy", "--help")
    assert "total" in run(copy, "-m", "tools.cost", "staging")
    # Not production unless its companion file says so (stack termination protection).
    from tools import params
    assert not params.environment("staging", copy / "params").production
