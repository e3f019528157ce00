"""Root wiring: every child parameter supplied, every GetAtt real, params files complete."""

from __future__ import annotations

import pytest
from troposphere import Output, Parameter, Template

from stacks import NESTED_LAYERS, names
from stacks.base import Layer
from stacks.root import RootBuilder, WiringError
from stacks.settings import GenerationSettings
from tests.cfn import REPO, generated, props, resources, walk
from tests.stacks import rules_eval
from tools import params


def root():
    return generated()["root.json"]


def nested():
    return resources(root(), "AWS::CloudFormation::Stack")


def test_every_child_parameter_is_supplied_and_nothing_else():
    for logical_id, stack in nested().items():
        child = generated()[props(stack)["TemplateURL"]]
        assert set(props(stack)["Parameters"]) == set(child.get("Parameters", {})), logical_id


def test_template_urls_are_relative_files_next_to_root():
    for stack in nested().values():
        url = props(stack)["TemplateURL"]
        assert "/" not in url and (REPO / "templates" / url).is_file()


def test_every_getatt_names_an_existing_output_of_an_earlier_layer():
    order = [layer.logical_id for layer in NESTED_LAYERS]
    for logical_id, stack in nested().items():
        for path, value in walk(props(stack)["Parameters"]):
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                source, attribute = value["Fn::GetAtt"]
                output = attribute.removeprefix("Outputs.")
                child = generated()[props(nested()[source])["TemplateURL"]]
                assert output in child["Outputs"], f"{logical_id}{path}"
                assert order.index(source) < order.index(logical_id), f"{logical_id} uses {source}"


def test_child_parameter_fed_by_output_of_the_same_name():
    for stack in nested().values():
        for name, value in props(stack)["Parameters"].items():
            if "Fn::GetAtt" in value:
                assert value["Fn::GetAtt"][1] == f"Outputs.{name}"
            elif "Ref" in value:
                assert value["Ref"] == name and name in root()["Parameters"]
                assert not root()["Parameters"][name]["Type"].startswith("List<")
            elif "Fn::Join" in value:  # list parameters pass joined: nested values are strings
                assert value["Fn::Join"] == [",", {"Ref": name}]
                assert root()["Parameters"][name]["Type"].startswith("List<")


def test_every_root_parameter_is_used():
    used = {v for _, v in walk(root()["Resources"]) if isinstance(v, str)}
    refs = {value["Ref"] for _, value in walk(root()) if isinstance(value, dict) and "Ref" in value}
    subs = " ".join(str(v) for v in used)
    for name in root()["Parameters"]:
        assert name in refs or f"${{{name}}}" in subs, name


@pytest.mark.parametrize("env", params.environments())
def test_every_root_parameter_has_a_value_in_each_environment_but_the_deploy_time_ones(env):
    """The params file sets what differs; the declared Defaults give the rest."""
    values = params.load_env(env)
    expected = set(root()["Parameters"]) - set(names.DEPLOY_TIME_PARAMETERS)
    assert set(values) == expected, f"params/{env}.json: missing {expected - set(values)}, " \
        f"unknown {set(values) - expected}"
    file_sets = params.load_overrides(env)
    assert set(file_sets) <= expected, f"params/{env}.json sets {set(file_sets) - expected}"
    for name, spec in root()["Parameters"].items():
        if name not in file_sets and name in values:
            assert values[name] == str(spec["Default"]), name


@pytest.mark.parametrize("env", params.environments())
def test_params_values_satisfy_root_constraints(env):
    import re

    for key, value in params.load_env(env).items():
        spec = root()["Parameters"][key]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], f"{env}: {key}={value}"
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), f"{env}: {key}={value}"
        if spec["Type"] == "Number":
            number = float(value)
            assert float(spec.get("MinValue", number)) <= number <= float(spec.get("MaxValue", number))
        if spec["Type"].startswith("List<AWS::EC2::AvailabilityZone::Name>"):
            zones = value.split(",")
            assert len(zones) == GenerationSettings.from_file(REPO / "generation.toml").az_count
            assert len(set(zones)) == len(zones), f"{env}: AZs repeat"


def test_dev_is_cheap_and_prod_is_hardened():
    dev, prod = params.load_env("dev"), params.load_env("prod")
    assert dev["NatGatewayMode"] == "single" and dev["InterfaceEndpoints"] == "false"
    assert prod["NatGatewayMode"] == "per-az" and prod["InterfaceEndpoints"] == "true"


class _Fake(Layer):
    def __init__(self, logical_id, parameters=(), outputs=(), condition=None, defaults=None):
        super().__init__(GenerationSettings())
        self.logical_id, self.file_name = logical_id, f"{logical_id.lower()}.json"
        self.root_condition = condition
        self.template = Template()
        for name in parameters:
            extra = {"Default": defaults[name]} if defaults and name in defaults else {}
            self.template.add_parameter(Parameter(name, Type="String", **extra))
        for name in outputs:
            self.template.add_output(Output(name, Value="x"))

    def build(self):
        return self.template


def _wire(*layers):
    return RootBuilder([(layer, layer.build()) for layer in layers]).build()


def test_wiring_prefers_an_earlier_output_over_a_root_parameter():
    root_ = _wire(_Fake("A", parameters=["X"], outputs=["Y"]), _Fake("B", parameters=["X", "Y"]))
    b = root_.resources["B"].properties["Parameters"]
    assert b["Y"].to_dict() == {"Fn::GetAtt": ["A", "Outputs.Y"]}
    assert b["X"].to_dict() == {"Ref": "X"}
    assert set(root_.parameters) == {"X"}


def test_conflicting_parameter_definitions_fail_naming_both_layers():
    with pytest.raises(WiringError, match=r"'X' is declared differently by A .* and B"):
        _wire(_Fake("A", parameters=["X"]), _Fake("B", parameters=["X"], defaults={"X": "1"}))


def test_output_of_a_conditional_layer_cannot_feed_another():
    with pytest.raises(WiringError, match=r"B needs 'Y' from A, which exists only under a condition"):
        _wire(_Fake("A", outputs=["Y"], condition=("AOn", "ASwitch", "true")),
              _Fake("B", parameters=["Y"]))


def test_duplicate_output_names_fail():
    with pytest.raises(WiringError, match="produced by both A and B"):
        _wire(_Fake("A", outputs=["Y"]), _Fake("B", outputs=["Y"]))


# -- Rules: all in root, evaluated offline ------------------------------------------------

NESTED_FILES = sorted(set(generated()) - {"root.json", "registry.json"})
DEPLOY_TIME_VALUES = {"ImageTag": "0123abc"}  # supplied by the deploy step, never in params


@pytest.mark.parametrize("file_name", NESTED_FILES)
def test_no_nested_template_has_rules(file_name):
    # A nested template's Rules run only when its stack is created, after the earlier layers
    # exist; in root they run before anything is created (stacks/base.py, Layer.rules).
    assert "Rules" not in generated()[file_name], f"{file_name}: move its Rules to rules()"


def test_root_carries_the_certificate_rules():
    assert set(generated()["root.json"]["Rules"]) >= {"CertificateNeedsZone", "DnsRecordNeedsZone"}


@pytest.mark.parametrize("env", params.environments())
def test_every_params_file_passes_root_constraints_and_rules(env):
    values = params.load_env(env) | DEPLOY_TIME_VALUES
    assert rules_eval.refusals(generated()["root.json"], values) == []


BAD_COMBINATIONS = [
    ("created certificate without a zone", {"CertificateArn": "", "HostedZoneId": ""},
     "CertificateNeedsZone"),
    ("DNS record without a zone", {"CertificateArn": "arn:aws:acm:us-east-1:111122223333:"
                                   "certificate/0b1c2d3e-0000-0000-0000-000000000000",
                                   "CreateDnsRecord": "true", "HostedZoneId": ""},
     "DnsRecordNeedsZone"),
    ("empty domain name", {"DomainName": ""}, "DomainName=''"),
    ("no domain name at all", {"DomainName": None}, "DomainName: no value and no default"),
    ("upper-case domain name", {"DomainName": "API.example.com"}, "DomainName='API.example.com'"),
    ("Spot with the warm pool", {"SpotInstances": "true", "WarmPoolEnabled": "true"},
     "SpotWithoutWarmPool"),
    ("Spot on a type with no same-GPU alternative",
     {"SpotInstances": "true", "InstanceType": "g5.48xlarge"}, "SpotNeedsAnAlternativeType"),
]


@pytest.mark.parametrize(("case", "change", "refusal"), BAD_COMBINATIONS,
                         ids=[c[0] for c in BAD_COMBINATIONS])
def test_bad_combinations_are_refused_before_anything_is_created(case, change, refusal):
    values = params.load_env("dev") | DEPLOY_TIME_VALUES
    values.update({k: v for k, v in change.items() if v is not None})
    for key in [k for k, v in change.items() if v is None]:
        values.pop(key)
    found = rules_eval.refusals(generated()["root.json"], values)
    assert any(refusal in line for line in found), found


def test_spot_without_the_warm_pool_on_a_type_with_an_alternative_is_accepted():
    values = params.load_env("dev") | DEPLOY_TIME_VALUES | {
        "SpotInstances": "true", "WarmPoolEnabled": "false", "InstanceType": "g5.xlarge"}
    assert rules_eval.refusals(generated()["root.json"], values) == []


def test_existing_certificate_without_a_zone_or_record_is_accepted():
    values = params.load_env("dev") | DEPLOY_TIME_VALUES | {
        "CertificateArn": "arn:aws:acm:us-east-1:111122223333:certificate/"
                          "0b1c2d3e-0000-0000-0000-000000000000",
        "HostedZoneId": "", "CreateDnsRecord": "false"}
    assert rules_eval.refusals(generated()["root.json"], values) == []


def test_the_evaluator_refuses_a_function_it_does_not_know():
    with pytest.raises(rules_eval.UnsupportedFunction):
        rules_eval.evaluate({"Fn::EachMemberIn": [[], []]}, {})


class _RuleLayer(_Fake):
    def __init__(self, logical_id, parameters, rule_refs, in_template=False):
        super().__init__(logical_id, parameters=parameters, outputs=["Out" + logical_id])
        self._rule = {"Assertions": [{"Assert": {"Fn::Not": [{"Fn::Equals": [
            {"Ref": name}, ""]}]}} for name in rule_refs]}
        if in_template:
            self.template.add_rule("InTemplate", self._rule)

    def rules(self):
        return {"Rule" + self.logical_id: self._rule}


def test_layer_rules_land_in_root():
    root_ = _wire(_RuleLayer("A", ["X"], ["X"])).to_dict()
    assert set(root_["Rules"]) == {"RuleA"}


def test_a_rule_over_a_parameter_root_does_not_declare_fails():
    # OutA feeds B from A's output: root has no such parameter for the rule to read.
    with pytest.raises(WiringError, match=r"rule 'RuleB' of B refers to \['OutA'\]"):
        _wire(_RuleLayer("A", ["X"], ["X"]), _RuleLayer("B", ["OutA"], ["OutA"]))


def test_rules_inside_a_layer_template_fail_generation():
    with pytest.raises(WiringError, match="A adds Rules to its own template"):
        _wire(_RuleLayer("A", ["X"], ["X"], in_template=True))
