"""generate.py: deterministic output, --check, --out, --help, and clear errors on bad settings."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from app import contract
from tests.cfn import REPO, TEMPLATES_DIR

GENERATE = [sys.executable, str(REPO / "generate.py")]


def run(*args, cwd=REPO):
    return subprocess.run(GENERATE + list(args), cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_two_runs_write_byte_identical_templates(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert run("--out", str(first)).returncode == 0
    assert run("--out", str(second)).returncode == 0
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert {"root.json", "registry.json", "network.json", "security.json", "config.json"} <= set(names)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
        assert (first / name).read_bytes().endswith(b"}\n")


def test_committed_templates_are_current():
    result = run("--check")
    assert result.returncode == 0, result.stderr


def test_check_names_a_template_edited_by_hand(tmp_path):
    out = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, out)
    edited = out / "security.json"
    edited.write_text(edited.read_text().replace("Disallow all traffic", "Allow all traffic"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    result = run("--check", "--out", str(out))

    assert result.returncode == 1
    assert "security.json" in result.stderr
    assert "network.json" not in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "--check wrote a file"


def test_check_names_missing_and_extra_templates(tmp_path):
    out = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, out)
    (out / "network.json").unlink()
    (out / "old-layer.json").write_text("{}\n")
    result = run("--check", "--out", str(out))
    assert result.returncode == 1
    assert "network.json" in result.stderr
    assert "old-layer.json (not generated any more)" in result.stderr


def test_help_reads_well():
    result = run("--help")
    assert result.returncode == 0
    for flag in ("--check", "--out", "--settings"):
        assert flag in result.stdout


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[generation]\naz_count = 4\n", "az_count = 4 is not allowed; allowed values: 2, 3"),
        ("[generation]\naz_count = \"two\"\n", "az_count = 'two' is not allowed"),
        ("[generation]\naz_count = true\n", "az_count = True is not allowed"),
        ("[generation]\nazs = 2\n", "unknown setting 'azs'; known settings: az_count"),
        ("[generation\n", "not valid TOML"),
    ],
)
def test_bad_setting_fails_with_one_clear_line(tmp_path, toml, expected):
    settings = tmp_path / "generation.toml"
    settings.write_text(toml)
    out = tmp_path / "out"
    result = run("--settings", str(settings), "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert str(settings) in lines[0] or "not valid TOML" in lines[0]
    assert not out.exists(), "a failed generation must write nothing"


def test_missing_settings_file_is_named(tmp_path):
    result = run("--settings", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "nope.toml: file not found" in result.stderr


def test_three_azs_change_the_shape(tmp_path):
    settings = tmp_path / "generation.toml"
    settings.write_text("[generation]\naz_count = 3\n")
    result = run("--settings", str(settings), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    network = (tmp_path / "out" / "network.json").read_text()
    assert '"PrivateSubnet3"' in network
    assert '"PrivateSubnet3"' not in (TEMPLATES_DIR / "network.json").read_text()


# -- what generate.py refuses before it writes anything (app/contract.py) -----------------------


def _snapshot(*paths):
    return {path: path.read_bytes() for root in paths
            for path in ([root] if root.is_file() else sorted(root.rglob("*"))) if path.is_file()}


@pytest.mark.parametrize(
    ("change", "rules"),
    [
        # first token no shorter than the longest generation (whatever that is): one rule
        ({"first_token_seconds": contract.TIMEOUTS.max_generation_seconds + 100}, 1),
        ({"max_generation_seconds": 100, "stream_ping_seconds": 130}, 3),
        ({"graceful_shutdown_seconds": 118, "request_body_seconds": 0}, 2),
    ],
)
def test_a_budget_whose_inequalities_fail_is_refused_writing_nothing(tmp_path, monkeypatch,
                                                                      capsys, change, rules):
    import dataclasses

    import generate
    from app import contract

    budget = dataclasses.replace(contract.TimeoutBudget(), **change)
    violations = budget.violations()
    assert len(violations) == rules, violations
    monkeypatch.setattr(contract, "TIMEOUTS", budget)
    derived = [REPO / "gateway.env", REPO / "app" / "settings.py", REPO / "docs"]
    before = _snapshot(TEMPLATES_DIR, *derived)

    assert generate.main([]) == 2
    assert generate.main(["--out", str(tmp_path / "out")]) == 2
    assert generate.main(["--check"]) == 2

    errors = capsys.readouterr().err.splitlines()
    refusal = errors[:len(violations) + 1]
    assert refusal[:-1] == [f"generate.py: error: timeout budget: {rule}" for rule in violations]
    assert "nothing written" in refusal[-1]
    assert not (tmp_path / "out").exists()
    assert _snapshot(TEMPLATES_DIR, *derived) == before


def test_a_declaration_that_breaks_its_own_bounds_is_refused(monkeypatch, capsys):
    import dataclasses

    import generate
    from app import contract

    broken = tuple(dataclasses.replace(s, default=0) if s.env == "GATEWAY_MAX_CONCURRENCY" else s
                   for s in contract.SETTINGS)
    monkeypatch.setattr(contract, "SETTINGS", broken)
    assert generate.main(["--templates-only", "--check"]) == 2
    assert ("generate.py: error: setting declaration: GATEWAY_MAX_CONCURRENCY must be greater "
            "than 0 (its own default 0 is not)") in capsys.readouterr().err.splitlines()
