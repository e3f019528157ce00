"""Changes that must be one edit (plus `make generate`), made on a temporary copy of the repo.

Each test copies the tracked files, makes the one edit, and runs the checks that matter for it
as a user would (subprocesses in the copy), so a second place that also needs editing fails it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


@pytest.fixture
def runnable_copy(copy: Path) -> Path:
    """The copy where uid 10001 may run the gateway from it (the container-start test does),
    sharing the runtime virtualenv the image tests already built (keyed by requirements)."""
    from tests.images.test_container_start import venv_cache

    place = Path(tempfile.mkdtemp(prefix="one-edit-", dir="/var/tmp"))  # noqa: S108
    place.chmod(0o755)
    target = place / "repo"
    shutil.move(str(copy), target)
    (target / ".cache").mkdir(exist_ok=True)
    (target / ".cache" / "images").symlink_to(venv_cache())
    yield target
    shutil.rmtree(place, ignore_errors=True)


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


def pytest_in(copy: Path, *paths: str) -> str:
    """The copy's own tests, as a user runs them there (ignoring this repository's cache).

    The copy is not a git checkout: the one test that asks git whether .env is ignored is left
    out (it does not read anything a setting or the budget changes)."""
    return run(copy, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "--deselect", "tests/images/test_compose.py::test_no_secret_is_committed", *paths)


def environment_of(template: dict, container: str) -> tuple[dict, dict]:
    definitions = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    found = next(c for c in definitions if c["Name"] == container)
    return ({e["Name"]: e["Value"] for e in found.get("Environment", [])},
            {e["Name"]: e["ValueFrom"] for e in found.get("Secrets", [])})


def test_a_gateway_setting_read_from_ssm_is_one_declaration(copy):
    started = time.monotonic()
    contract = copy / "app" / "contract.py"
    text = contract.read_text()
    end = "\n)\n\nSETTINGS_BY_ENV"
    assert text.count(end) == 1
    contract.write_text(text.replace(end, (
        '\n    Setting("GATEWAY_RETRY_BUDGET", "int", 3, Source.SSM,\n'
        '            "Retries a request may spend (added by tests/test_one_edit.py).", above=0),'
        + end)))

    run(copy, "generate.py")
    run(copy, "generate.py", "--check")
    config = json.loads((copy / "templates" / "config.json").read_text())
    names = {json.dumps(r["Properties"]["Name"]): r["Properties"]["Value"]
             for r in config["Resources"].values() if r["Type"] == "AWS::SSM::Parameter"}
    assert names[json.dumps({"Fn::Sub": "/${ProjectName}/${EnvironmentName}/GATEWAY_RETRY_BUDGET"})] == "3"
    service = json.loads((copy / "templates" / "service.json").read_text())
    environment, secrets = environment_of(service, "gateway")
    assert "GATEWAY_RETRY_BUDGET" in secrets and "GATEWAY_RETRY_BUDGET" not in environment
    assert "GATEWAY_RETRY_BUDGET=3\n" in (copy / "gateway.env").read_text()
    assert 'retry_budget: int = declared("GATEWAY_RETRY_BUDGET")' in (
        copy / "app" / "settings.py").read_text()

    # The gateway reads it, typed, with its bound; the checks of settings, compose and parity.
    probe = ("import os; os.environ['GATEWAY_RETRY_BUDGET'] = '9'; "
             "from app.settings import load_settings, ConfigurationError; "
             "print(load_settings().retry_budget + 1)")
    assert run(copy, "-c", probe).strip() == "10"
    refused = run(copy, "-c", "from app.settings import load_settings, ConfigurationError\n"
                              "try:\n    load_settings(retry_budget=0)\n"
                              "except ConfigurationError as e:\n    print(e)")
    assert "GATEWAY_RETRY_BUDGET must be greater than 0" in refused
    pytest_in(copy, "tests/app/test_settings.py", "tests/app/test_contract.py",
              "tests/images/test_parity.py", "tests/images/test_compose.py",
              "tests/stacks/test_config.py", "tests/stacks/test_service.py")
    run(copy, "-m", "mypy")
    print(f"one SSM setting added: one declaration, generate, checks pass "
          f"({time.monotonic() - started:.0f} s)")


def test_raising_the_longest_generation_is_one_number(runnable_copy):
    started = time.monotonic()
    copy = runnable_copy
    contract = copy / "app" / "contract.py"
    text = contract.read_text()
    assert text.count("    max_generation_seconds: int = 300\n") == 1
    contract.write_text(text.replace("    max_generation_seconds: int = 300\n",
                                     "    max_generation_seconds: int = 600\n"))

    run(copy, "generate.py")
    run(copy, "generate.py", "--check")
    balancer = json.loads((copy / "templates" / "load_balancer.json").read_text())
    attributes = {}
    for resource in balancer["Resources"].values():
        for key in ("LoadBalancerAttributes", "TargetGroupAttributes"):
            attributes.update({a["Key"]: a["Value"] for a in resource.get("Properties", {}).get(key, [])
                               if isinstance(a, dict) and "Key" in a})
    assert attributes["idle_timeout.timeout_seconds"] == "630"
    assert attributes["deregistration_delay.timeout_seconds"] == "630"
    environment, _ = environment_of(json.loads((copy / "templates" / "service.json").read_text()),
                                    "gateway")
    assert environment["UVICORN_TIMEOUT_KEEP_ALIVE"] == "635"
    assert "UVICORN_TIMEOUT_KEEP_ALIVE=635\n" in (copy / "gateway.env").read_text()
    assert "| longest generation | 600 |" in (copy / "docs" / "infrastructure.md").read_text()

    pytest_in(copy, "tests/images/test_parity.py", "tests/images/test_container_start.py",
              "tests/images/test_dockerfiles.py", "tests/app/test_contract.py",
              "tests/app/test_settings.py", "tests/stacks/test_load_balancer.py")
    print(f"longest generation 300 -> 600 s: one number, generate, checks pass "
          f"({time.monotonic() - started:.0f} s)")
