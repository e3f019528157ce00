"""Every own guard rule (security/rules/) passes its compliant fixture and fails each bad one.

A guard rule that never fails is easy to write (a filter that selects nothing, a `when` that
never holds), so each rule must: PASS (not SKIP) on the compliant template, FAIL on every bad
case of tests/security/fixtures.py naming the resource the case broke, and stay silent on the
other rules' bad cases (each mutation breaks one rule). One cfn-guard run covers all fixtures.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from app.contract import OLLAMA_PORT
from tests.security import fixtures
from tools import cfnguard


@cache
def _own_rules() -> dict[str, cfnguard.Rule]:
    return cfnguard.catalogue(cfnguard.OWN_RULES_DIR, "own")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict[str, cfnguard.Outcome]]:
    """fixture name -> rule name -> outcome."""
    directory: Path = tmp_path_factory.mktemp("own-rule-fixtures")
    data = {"good": directory / "good.json"}
    data["good"].write_text(json.dumps(fixtures.good_template(), indent=1))
    for rule, case, _ in fixtures.all_cases():
        name = f"{rule}--{case}"
        data[name] = directory / f"{name}.json"
        data[name].write_text(json.dumps(fixtures.bad_template(rule, case), indent=1))
    results: dict[str, dict[str, cfnguard.Outcome]] = {}
    for outcome in cfnguard.validate(data, _own_rules(), [cfnguard.OWN_RULES_DIR]):
        results.setdefault(outcome.template, {})[outcome.rule.name] = outcome
    return results


def test_there_are_own_rules_for_everything_the_issue_lists():
    ids = {rule.id for rule in _own_rules().values()}
    assert ids == {"LLM.ECS.1", "LLM.ECS.2", "LLM.ECS.3", "LLM.ECS.4", "LLM.ECS.5", "LLM.ECS.6",
                   "LLM.ECS.7", "LLM.EC2.1", "LLM.EC2.2", "LLM.SG.1", "LLM.SG.2"}


def test_every_rule_has_bad_fixtures():
    assert set(fixtures.BAD_CASES) == set(_own_rules()), (
        "each rule in security/rules needs bad cases in tests/security/fixtures.py (and each "
        "bad case a rule)")


@pytest.mark.parametrize("rule", sorted(_own_rules()))
def test_rule_passes_the_compliant_template(outcomes, rule):
    outcome = outcomes["good"][rule]
    assert outcome.status == "PASS", (
        f"{rule} is {outcome.status} on the compliant fixture: {outcome.messages} "
        "(SKIP means its filter selected nothing: the rule would never fail)")


@pytest.mark.parametrize(("rule", "case", "resource"), fixtures.all_cases(),
                         ids=[f"{r}-{c}" for r, c, _ in fixtures.all_cases()])
def test_rule_fails_its_bad_fixture_naming_the_resource(outcomes, rule, case, resource):
    results = outcomes[f"{rule}--{case}"]
    outcome = results[rule]
    assert outcome.status == "FAIL", f"{rule} did not catch {case}"
    assert resource in outcome.resources, (
        f"{rule} on {case} names {outcome.resources}, not {resource}")
    assert any(_own_rules()[rule].id in message for message in outcome.messages), outcome.messages
    others = sorted(name for name, other in results.items() if name != rule and other.status == "FAIL")
    assert others == [], f"{case} should break only {rule}, also broke {others}"


def test_the_port_rule_forbids_the_contracts_ollama_port_and_ssh():
    """The guard holds the ports as literals (a security rule moves only when reviewed); this
    fails when app/contract.py's OLLAMA_PORT moves without it."""
    text = (cfnguard.OWN_RULES_DIR / "sg-no-ssh-or-ollama-port.guard").read_text()
    for port in (OLLAMA_PORT, 22):
        assert f"FromPort > {port} or ToPort < {port}" in text, port


def test_rules_ignore_templates_without_their_resources(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"AWSTemplateFormatVersion": "2010-09-09", "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {}}}}))
    statuses = {o.rule.name: o.status for o in cfnguard.validate(
        {"empty.json": path}, _own_rules(), [cfnguard.OWN_RULES_DIR])}
    assert set(statuses.values()) == {"SKIP"}


def test_a_rule_file_that_does_not_parse_is_an_error_not_a_pass(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.guard").write_text(
        "# Rule: LLM.X.1  llm_broken\n# Title: broken on purpose\n"
        "rule llm_broken when Resources exists {\n  Resources.* {\n    Type exists\n"
        "    <<\n    [LLM.X.1]: broken\n    >>\n  some x {\n")
    data = tmp_path / "t.json"
    data.write_text(json.dumps(fixtures.good_template()))
    with pytest.raises(cfnguard.GuardError, match="(Parsing error|did not evaluate rule llm_broken)"):
        cfnguard.validate({"t.json": data}, cfnguard.catalogue(rules, "own"), [rules])
