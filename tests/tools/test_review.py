"""make diff: each change of the table gives its findings; every case in one node process."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.tools import review_cases
from tests.tools.review_cases import CASES
from tools import params as params_files
from tools.review import engine, rendering, review, sides
from tools.review import report as formats
from tools.review.__main__ import main

REPO = sides.REPO


@pytest.fixture(scope="module")
def reviewed():
    """All cases reviewed in one build_reports call; records how often node was started."""
    calls = []
    real = engine.diff_pairs

    def counting(pairs):
        calls.append(len(pairs))
        return real(pairs)

    base = sides.working_tree()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "diff_pairs", counting)
        reports = review.build_reports([review_cases.sides(base, case) for case in CASES])
    return dict(zip([case.name for case in CASES], reports, strict=True)), calls


def test_the_table_has_the_cases_the_issue_names():
    assert len(CASES) >= 12
    names = " ".join(case.name for case in CASES)
    for words in ("ECS service", "subnet", "0.0.0.0/0", "wildcard", "log group removed",
                  "without a Default", "InstanceType in prod", "LoadBalancerScheme", "cosmetic"):
        assert words in names


def test_every_case_runs_in_one_node_process(reviewed):
    _, calls = reviewed
    assert len(calls) == 1 and calls[0] > len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_change_produces_its_findings(reviewed, case):
    report = reviewed[0][case.name]
    got = [(f.env, f.layer, f.kind, f.text) for f in report.findings]
    for env, layer, kind, words in case.expect:
        assert any(g[:3] == (env, layer, kind) and words in g[3] for g in got), (
            f"missing [{env}] {layer}: {kind}: ...{words}...\ngot: {got}")
    if case.only:
        unexpected = [g for g in got if not any(g[:3] == tuple(e[:3]) and e[3] in g[3]
                                                for e in case.expect)]
        assert not unexpected, f"findings the case must not produce: {unexpected}"
    environments = {r.env: r for r in report.environments}
    for env in case.quiet:
        assert not environments[env].findings and not environments[env].layers, (
            f"{env} must be untouched: {environments[env].findings} {list(environments[env].layers)}")
    for env, template in case.untouched.items():
        assert template in environments[env].untouched


def test_markdown_puts_findings_first_and_builds_tables_from_the_engine(reviewed):
    report = reviewed[0]["rename the ECS service"]
    text = formats.markdown(report)
    assert text.startswith(formats.MARKER)
    assert text.index("**Findings (") < text.index("<details>")
    assert "| ~ | Service | AWS::ECS::Service | replace | ServiceName (replace) |" in text
    assert "aws-cdk#1299" in text and "make preview" in text
    plain = formats.text(report)
    assert "[~] AWS::ECS::Service Service replace" in plain  # the engine's own rendering
    assert "\x1b[" not in plain  # colour off


def test_a_cosmetic_change_reports_no_finding_in_markdown(reviewed):
    text = formats.markdown(reviewed[0]["cosmetic: descriptions reworded"])
    assert "**Findings (0)**" in text and "- none:" in text


def test_an_unchanged_side_is_not_rendered_again(reviewed, monkeypatch):
    def must_not_render(job):
        raise AssertionError(f"rendered again: {job[2]}")

    monkeypatch.setattr(rendering, "_render", must_not_render)
    base = sides.working_tree()
    renderings = rendering.render_all([(base, "dev"), (base, "prod")])
    assert all(r.templates and r.error is None for r in renderings)


def test_refuses_a_base_that_is_not_a_ref(capsys):
    assert main(["--base", "no-such-ref-anywhere"]) == 2
    assert "BASE='no-such-ref-anywhere' is not a git ref" in capsys.readouterr().err


def test_refuses_without_node_and_names_the_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(engine.ToolMissing, match="apt-get install -y --no-install-recommends nodejs npm"):
        engine.diff_pairs([{"key": "x", "old": {}, "new": {}}])


def test_refuses_stale_templates(tmp_path):
    for name in ("generate.py", "generation.toml"):
        shutil.copy2(REPO / name, tmp_path / name)
    for directory in ("stacks", "app", "tools", "templates"):
        shutil.copytree(REPO / directory, tmp_path / directory,
                        ignore=shutil.ignore_patterns("__pycache__", "review"))
    sides.check_fresh(tmp_path)  # fresh: no error
    (tmp_path / "templates" / "security.json").write_text("{}\n")
    with pytest.raises(sides.ReviewError, match="(?s)stale.*security.json.*make generate"):
        sides.check_fresh(tmp_path)


def test_make_diff_against_head_prints_a_report():
    result = subprocess.run([sys.executable, "-m", "tools.review", "--base", "HEAD", "--format", "md"],
                            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(formats.MARKER)
    assert "| dev |" in result.stdout and "| prod |" in result.stdout


def test_extra_sections_hook_adds_a_section_per_environment(monkeypatch):
    """The cost report plugs in here: one section per environment."""
    def floor_and_ceiling(env_review):
        return review.Section("Cost", [f"floor and ceiling of {env_review.env}: unchanged"])

    monkeypatch.setattr(review, "EXTRA_SECTIONS", [floor_and_ceiling])
    base = sides.working_tree()
    [report] = review.build_reports([(base, base)])
    text = formats.markdown(report)
    for env in params_files.environments():
        assert f"**{env}: Cost**" in text and f"floor and ceiling of {env}: unchanged" in text
