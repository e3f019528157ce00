"""Security groups: exact rules, no Ollama or SSH port anywhere, least-privilege egress."""

from __future__ import annotations

import pytest

from app.contract import GATEWAY_PORT, OLLAMA_PORT
from tests.cfn import generated, port_range, props, resources, security_group_rules

FORBIDDEN_PORTS = (OLLAMA_PORT, 22)


def security():
    return generated()["security.json"]


def standalone(kind: str) -> dict[str, dict]:
    type_ = {"in": "AWS::EC2::SecurityGroupIngress", "out": "AWS::EC2::SecurityGroupEgress"}[kind]
    return {name: props(body) for name, body in resources(security(), type_).items()}


def rules_of(group: str, kind: str) -> list[dict]:
    return [r for r in standalone(kind).values() if r["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}]


def test_task_ingress_is_exactly_the_gateway_port_from_the_alb_group():
    assert rules_of("TaskSecurityGroup", "in") == [{
        "GroupId": {"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]},
        "IpProtocol": "tcp", "FromPort": GATEWAY_PORT, "ToPort": GATEWAY_PORT,
        "SourceSecurityGroupId": {"Fn::GetAtt": ["AlbSecurityGroup", "GroupId"]},
        "Description": "Gateway port from the load balancer only",
    }]


def test_alb_egress_is_only_to_the_tasks_gateway_port():
    rules = rules_of("AlbSecurityGroup", "out")
    assert len(rules) == 1
    assert rules[0]["DestinationSecurityGroupId"] == {"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]}
    assert port_range(rules[0]) == range(GATEWAY_PORT, GATEWAY_PORT + 1)


def test_alb_ingress_is_443_and_80_from_the_allowed_cidr():
    rules = rules_of("AlbSecurityGroup", "in")
    assert sorted(r["FromPort"] for r in rules) == [80, 443]
    assert all(r["CidrIp"] == {"Ref": "AlbIngressCidr"} for r in rules)


def test_instances_have_no_ingress_at_all():
    assert rules_of("InstanceSecurityGroup", "in") == []
    assert "SecurityGroupIngress" not in props(security()["Resources"]["InstanceSecurityGroup"])


@pytest.mark.parametrize("group", ["TaskSecurityGroup", "InstanceSecurityGroup"])
def test_tasks_and_instances_egress_only_https(group):
    rules = rules_of(group, "out")
    assert [port_range(r) for r in rules] == [range(443, 444)]


def test_endpoints_accept_https_from_the_vpc_and_send_nothing():
    assert [(r["FromPort"], r["CidrIp"]) for r in rules_of("EndpointSecurityGroup", "in")] == [
        (443, {"Ref": "VpcCidr"})
    ]
    assert rules_of("EndpointSecurityGroup", "out") == []


def test_every_group_drops_the_default_allow_all_egress():
    for name, group in resources(security(), "AWS::EC2::SecurityGroup").items():
        inline = props(group)["SecurityGroupEgress"]
        assert len(inline) == 1 and inline[0]["CidrIp"] == "255.255.255.255/32", name
        assert port_range(inline[0]) == range(0), "the placeholder must match no TCP/UDP port"


@pytest.mark.parametrize("name", sorted(generated()))
def test_no_rule_anywhere_opens_ollama_or_ssh(name):
    for rule_name, kind, rule in security_group_rules(generated()[name]):
        for port in FORBIDDEN_PORTS:
            assert port not in port_range(rule), f"{name}:{rule_name} ({kind}) opens {port}"


@pytest.mark.parametrize("name", sorted(generated()))
def test_world_ingress_only_on_the_alb_web_ports(name):
    for rule_name, kind, rule in security_group_rules(generated()[name]):
        if kind == "in" and rule.get("CidrIp") in ("0.0.0.0/0", {"Ref": "AlbIngressCidr"}):
            assert rule["GroupId"] == {"Fn::GetAtt": ["AlbSecurityGroup", "GroupId"]}, rule_name
            assert rule["FromPort"] in (80, 443), rule_name
        assert rule.get("CidrIpv6") != "::/0", rule_name


def test_every_rule_has_a_description():
    for rule_name, _, rule in security_group_rules(security()):
        assert rule.get("Description"), rule_name
    for name, group in resources(security(), "AWS::EC2::SecurityGroup").items():
        assert props(group)["GroupDescription"], name
