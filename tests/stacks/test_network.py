"""Network layer properties, for 2 and 3 AZs."""

from __future__ import annotations

import ipaddress
import re

import pytest

from stacks.endpoints import INTERFACE_SERVICES
from tests.cfn import REPO, generated, props, resources
from tools import params


@pytest.fixture(params=[2, 3], ids=["2az", "3az"])
def network(request):
    return request.param, generated(request.param)["network.json"]


def test_one_public_and_one_private_subnet_per_az(network):
    n, template = network
    subnets = resources(template, "AWS::EC2::Subnet")
    assert sorted(subnets) == sorted(
        [f"PublicSubnet{k}" for k in range(1, n + 1)] + [f"PrivateSubnet{k}" for k in range(1, n + 1)]
    )
    azs = [props(s)["AvailabilityZone"]["Fn::Select"][0] for s in subnets.values()]
    assert sorted(azs) == sorted(list(range(n)) * 2)


def test_no_subnet_maps_public_ips(network):
    _, template = network
    for name, subnet in resources(template, "AWS::EC2::Subnet").items():
        assert props(subnet)["MapPublicIpOnLaunch"] is False, name


def test_subnet_cidrs_are_distinct_slices_of_the_vpc(network):
    n, template = network
    indexes = [props(s)["CidrBlock"]["Fn::Select"][0]
               for s in resources(template, "AWS::EC2::Subnet").values()]
    assert sorted(indexes) == list(range(2 * n))
    for subnet in resources(template, "AWS::EC2::Subnet").values():
        cidr = props(subnet)["CidrBlock"]["Fn::Select"][1]["Fn::Cidr"]
        assert cidr[0] == {"Fn::GetAtt": ["Vpc", "CidrBlock"]} and cidr[1] == 2 * n


def fn_cidr(block: str, count: int, host_bits: int) -> list[str]:
    """What Fn::Cidr returns: the first `count` subnets with `host_bits` host bits each
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference-cidr.html:
    cidrBits is the number of subnet bits, i.e. host bits: 8 -> /24, whatever the VPC's prefix)."""
    network = ipaddress.ip_network(block)
    subnets = network.subnets(new_prefix=32 - host_bits)
    return [str(next(subnets)) for _ in range(count)]


VPC_CIDRS = sorted({params.load_env(env)["VpcCidr"] for env in params.environments()}
                   | {"10.0.0.0/16", "10.0.0.0/18"})  # the parameter allows /16 to /18


@pytest.mark.parametrize("vpc_cidr", VPC_CIDRS)
def test_subnet_prefix_follows_from_the_fn_cidr_arguments(network, vpc_cidr):
    n, template = network
    subnets = resources(template, "AWS::EC2::Subnet")
    _, count, host_bits = props(next(iter(subnets.values())))["CidrBlock"]["Fn::Select"][1]["Fn::Cidr"]
    blocks = fn_cidr(vpc_cidr, count, int(host_bits))
    prefixes = {ipaddress.ip_network(b).prefixlen for b in blocks}
    assert prefixes == {24}, f"Fn::Cidr with {host_bits} host bits in {vpc_cidr}: {prefixes}"
    assert all(ipaddress.ip_network(b).subnet_of(ipaddress.ip_network(vpc_cidr)) for b in blocks)
    # What the docs and the layer's comment say must be what Fn::Cidr makes.
    row = next(line for line in (REPO / "docs" / "infrastructure.md").read_text().splitlines()
               if line.startswith("| `VpcCidr` |"))
    assert re.search(rf"/{prefixes.pop()} subnets", row), row
    source = (REPO / "stacks" / "network.py").read_text()
    assert not re.search(r"/2[5-8] in a /1[6-8]", source), "network.py still claims another prefix"


def test_private_routes_use_nat_one_or_their_own_in_per_az_mode(network):
    n, template = network
    routes = resources(template, "AWS::EC2::Route")
    assert props(routes["PrivateDefaultRoute1"])["NatGatewayId"] == {"Ref": "NatGateway1"}
    for k in range(2, n + 1):
        assert props(routes[f"PrivateDefaultRoute{k}"])["NatGatewayId"] == {
            "Fn::If": ["NatPerAz", {"Ref": f"NatGateway{k}"}, {"Ref": "NatGateway1"}]
        }
    nats = resources(template, "AWS::EC2::NatGateway")
    assert "Condition" not in nats["NatGateway1"]
    assert all(nats[f"NatGateway{k}"]["Condition"] == "NatPerAz" for k in range(2, n + 1))


def test_nat_gateways_sit_in_public_subnets(network):
    _, template = network
    for name, nat in resources(template, "AWS::EC2::NatGateway").items():
        assert props(nat)["SubnetId"]["Ref"].startswith("PublicSubnet"), name


def test_only_public_route_table_reaches_the_internet_gateway(network):
    _, template = network
    for name, route in resources(template, "AWS::EC2::Route").items():
        if "GatewayId" in props(route):
            assert props(route)["RouteTableId"] == {"Ref": "PublicRouteTable"}, name


def test_s3_gateway_endpoint_always_on_every_private_route_table(network):
    n, template = network
    endpoint = resources(template, "AWS::EC2::VPCEndpoint")["S3GatewayEndpoint"]
    assert "Condition" not in endpoint
    assert props(endpoint)["VpcEndpointType"] == "Gateway"
    assert props(endpoint)["RouteTableIds"] == [
        {"Ref": f"PrivateRouteTable{k}"} for k in range(1, n + 1)
    ]


def test_flow_logs_capture_all_traffic_into_an_encrypted_retained_group(network):
    _, template = network
    flow_log = props(resources(template, "AWS::EC2::FlowLog")["VpcFlowLog"])
    assert flow_log["TrafficType"] == "ALL" and flow_log["ResourceId"] == {"Ref": "Vpc"}
    group = resources(template, "AWS::Logs::LogGroup")["FlowLogGroup"]
    assert props(group)["KmsKeyId"] == {"Ref": "KmsKeyArn"}
    assert group["DeletionPolicy"] == "Retain" and group["UpdateReplacePolicy"] == "Retain"


def test_vpc_has_dns_for_private_endpoints():
    vpc = props(generated()["network.json"]["Resources"]["Vpc"])
    assert vpc["EnableDnsHostnames"] is True and vpc["EnableDnsSupport"] is True


def test_interface_endpoints_cover_every_api_the_tasks_and_instances_call():
    template = generated()["endpoints.json"]
    services = {
        props(e)["ServiceName"]["Fn::Sub"].split("}.", 1)[1]
        for e in resources(template, "AWS::EC2::VPCEndpoint").values()
    }
    # What the tasks and instances call without NAT: image pulls (ECR api and dkr), logs, the
    # task's SSM parameters and secret, the ECS agent's three endpoints. More may be added.
    assert services >= {"ecr.api", "ecr.dkr", "logs", "ssm", "secretsmanager", "ecs",
                        "ecs-agent", "ecs-telemetry"}
    assert services == {service for _, service in INTERFACE_SERVICES}
    assert len(INTERFACE_SERVICES) == len(services)
    for endpoint in resources(template, "AWS::EC2::VPCEndpoint").values():
        assert props(endpoint)["PrivateDnsEnabled"] is True
        assert props(endpoint)["SubnetIds"] == {"Ref": "PrivateSubnetIds"}


def test_endpoints_stack_exists_only_when_switched_on():
    root = generated()["root.json"]
    assert root["Resources"]["Endpoints"]["Condition"] == "InterfaceEndpointsEnabled"
    assert root["Conditions"]["InterfaceEndpointsEnabled"] == {
        "Fn::Equals": [{"Ref": "InterfaceEndpoints"}, "true"]
    }
