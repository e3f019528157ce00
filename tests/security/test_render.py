"""tools/render.py: the templates as each environment deploys them (cloud-radar, offline)."""

from __future__ import annotations

import json

import pytest

from tests.security.common import ENVIRONMENTS
from tools import params, render


def _intrinsics(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" or key.startswith("Fn::"):
                yield "/".join(map(str, path + (key,)))
            yield from _intrinsics(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _intrinsics(value, path + (index,))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_rendering_leaves_no_intrinsic_function(rendered, env):
    left = {name: list(_intrinsics({"Resources": t.get("Resources", {}),
                                    "Outputs": t.get("Outputs", {})}))
            for name, t in rendered(env).templates.items()}
    assert {name: paths for name, paths in left.items() if paths} == {}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_rendering_uses_the_environment_parameters(rendered, env):
    values = params.load_env(env)
    network = rendered(env).templates["network.json"]
    assert network["Resources"]["Vpc"]["Properties"]["CidrBlock"] == values["VpcCidr"]
    azs = values["AvailabilityZones"].split(",")
    assert network["Resources"]["PrivateSubnet1"]["Properties"]["AvailabilityZone"] == azs[0]
    # Conditions resolved: NAT gateway 2 exists only in per-az mode.
    assert ("NatGateway2" in network["Resources"]) == (values["NatGatewayMode"] == "per-az")
    # Nested stacks created only when their Condition holds in this environment.
    assert ("endpoints.json" in rendered(env).templates) == (values["InterfaceEndpoints"] == "true")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_outputs_flow_from_child_to_child_through_root(rendered, env):
    templates = rendered(env).templates
    vpc_id = templates["network.json"]["Outputs"]["VpcId"]["Value"]
    assert vpc_id.startswith("vpc-")
    assert templates["root.json"]["Resources"]["Security"]["Properties"]["Parameters"]["VpcId"] == vpc_id
    groups = templates["security.json"]["Resources"]
    assert groups["AlbIngressHttps"]["Properties"]["GroupId"] == \
        templates["security.json"]["Outputs"]["AlbSecurityGroupId"]["Value"]
    key = templates["config.json"]["Outputs"]["KmsKeyArn"]["Value"]
    assert key.startswith(f"arn:aws:kms:{rendered(env).region}:{render.ACCOUNT_ID}:key/")
    assert templates["network.json"]["Resources"]["FlowLogGroup"]["Properties"]["KmsKeyId"] == key


def test_rendering_is_deterministic():
    first = render.render_environment(ENVIRONMENTS[0])
    second = render.render_environment(ENVIRONMENTS[0])
    assert json.dumps(first.templates, sort_keys=True) == json.dumps(second.templates, sort_keys=True)


# --- the cloud-radar workarounds, each on a small template ----------------------------------------


def test_template_without_conditions_and_with_get_azs_renders_offline():
    template = {"Resources": {"Subnet": {"Type": "AWS::EC2::Subnet", "Properties": {
        "AvailabilityZone": {"Fn::Select": [1, {"Fn::GetAZs": ""}]},
        "VpcId": "vpc-0123456789abcdef0", "CidrBlock": "10.0.0.0/24"}}}}
    out = render.render_template(template, {}, stack_name="s", region="eu-west-1")
    assert out["Resources"]["Subnet"]["Properties"]["AvailabilityZone"] == "eu-west-1b"
    assert "Conditions" not in out


def test_container_depends_on_condition_survives_rendering():
    template = {"Conditions": {}, "Resources": {"Task": {
        "Type": "AWS::ECS::TaskDefinition", "Properties": {"ContainerDefinitions": [
            {"Name": "gateway", "DependsOn": [{"ContainerName": "ollama", "Condition": "HEALTHY"}]},
            {"Name": "ollama"}]}}}}
    out = render.render_template(template, {}, stack_name="s")
    containers = out["Resources"]["Task"]["Properties"]["ContainerDefinitions"]
    assert containers[0]["DependsOn"] == [{"ContainerName": "ollama", "Condition": "HEALTHY"}]


def test_import_value_needs_an_imports_map():
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {
        "TopicName": {"Fn::ImportValue": "shared-name"}}}}}
    out = render.render_template(template, {}, stack_name="s", imports={"shared-name": "t"})
    assert out["Resources"]["Topic"]["Properties"]["TopicName"] == "t"
    with pytest.raises(render.RenderError, match="ImportValue"):
        render.render_template(template, {}, stack_name="s")


def test_missing_parameter_value_is_named():
    template = {"Parameters": {"Needed": {"Type": "String"}}, "Resources": {}}
    with pytest.raises(render.RenderError, match="'Needed'.*params/<env>.json"):
        render.render_template(template, {}, stack_name="s", origin="x.json")


def test_ssm_typed_child_parameter_fed_a_resolved_value_is_a_problem(tmp_path):
    ssm = "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    child = {"Parameters": {"Ami": {"Type": ssm}}, "Resources": {"Lt": {
        "Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
            "ImageId": {"Ref": "Ami"}}}}}}
    root = {"Parameters": {"Ami": {"Type": ssm, "Default": "/aws/service/ami"}}, "Resources": {
        "Child": {"Type": "AWS::CloudFormation::Stack", "Properties": {
            "TemplateURL": "child.json", "Parameters": {"Ami": {"Ref": "Ami"}}}}}}
    (tmp_path / "root.json").write_text(json.dumps(root))
    (tmp_path / "child.json").write_text(json.dumps(child))
    out = render.render_environment("x", tmp_path, values={})
    assert len(out.problems) == 1 and "child.json: parameter Ami" in out.problems[0]
    image = out.templates["child.json"]["Resources"]["Lt"]["Properties"]["LaunchTemplateData"]["ImageId"]
    assert image.startswith("ami-")

    # Fixed the way the problem says: the child takes the plain type.
    child["Parameters"]["Ami"]["Type"] = "AWS::EC2::Image::Id"
    (tmp_path / "child.json").write_text(json.dumps(child))
    assert render.render_environment("x", tmp_path, values={}).problems == []
