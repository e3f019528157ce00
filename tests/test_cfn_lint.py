"""cfn-lint over every generated template: 0 errors, 0 warnings, informational rules on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cfn import REPO, TEMPLATES_DIR

CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")


def lint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CFN_LINT, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_every_template_lints_clean():
    # Uses .cfnlintrc.yaml: all templates, informational rules included, W3002 ignored there.
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_lint_config_turns_informational_rules_on():
    config = (REPO / ".cfnlintrc.yaml").read_text()
    assert "include_checks:\n  - I" in config


def test_nested_stack_parameter_check_is_active(tmp_path):
    """E3043 must catch a root that stops passing a child parameter (proves wiring is linted)."""
    import json
    import shutil

    out = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, out)
    root = json.loads((out / "root.json").read_text())
    del root["Resources"]["Security"]["Properties"]["Parameters"]["VpcCidr"]
    (out / "root.json").write_text(json.dumps(root, indent=2))
    result = lint("--include-checks", "I", "--ignore-checks", "W3002", "--",
                  str(out / "root.json"))
    assert result.returncode != 0
    assert "E3043" in result.stdout and "VpcCidr" in result.stdout


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES_DIR.glob("*.json")))
def test_templates_have_no_exports(name):
    import json

    outputs = json.loads((TEMPLATES_DIR / name).read_text()).get("Outputs", {})
    exported = [key for key, output in outputs.items() if "Export" in output]
    assert exported == [], "wire outputs through root.json, not Exports"
