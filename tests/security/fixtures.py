"""Fixtures for the project's own guard rules: one compliant rendered template, and per rule
mutations that must make exactly that rule fail.

The compliant template has every resource type the rules read (written against the
CloudFormation resource schemas of AWS::ECS::TaskDefinition, AWS::ECS::Service,
AWS::EC2::LaunchTemplate and the security group types), in rendered form (no Ref/Fn::If), as
the gate evaluates the real templates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from app.contract import OLLAMA_PORT

ALB_GROUP = "sg-0a1b2c3d4e5f60718"
TASK_GROUP = "sg-0f1e2d3c4b5a69788"


def good_template() -> dict:
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "TaskDefinition": {
                "Type": "AWS::ECS::TaskDefinition",
                "Properties": {
                    "Family": "llm-api-prod",
                    "NetworkMode": "awsvpc",
                    "RequiresCompatibilities": ["EC2"],
                    "ContainerDefinitions": [
                        {
                            "Name": "gateway",
                            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-api/gateway:abc",
                            "Essential": True,
                            "User": "10001:10001",
                            "ReadonlyRootFilesystem": True,
                            "PortMappings": [{"ContainerPort": 8000, "Protocol": "tcp"}],
                            "Environment": [
                                {"Name": "OLLAMA_BASE_URL", "Value": f"http://127.0.0.1:{OLLAMA_PORT}"},
                                {"Name": "GATEWAY_LOG_LEVEL", "Value": "info"},
                            ],
                            "Secrets": [
                                {"Name": "GATEWAY_API_KEYS", "ValueFrom":
                                 "arn:aws:secretsmanager:us-east-1:123456789012:secret:keys-AbCdEf"},
                                {"Name": "GATEWAY_MAX_OUTPUT_TOKENS", "ValueFrom":
                                 "arn:aws:ssm:us-east-1:123456789012:parameter/llm-api/prod/x"},
                            ],
                            "DependsOn": [{"ContainerName": "ollama", "Condition": "HEALTHY"}],
                            "LogConfiguration": {"LogDriver": "awslogs", "Options": {
                                "awslogs-group": "gateway", "awslogs-region": "us-east-1",
                                "awslogs-stream-prefix": "gateway"}},
                        },
                        {
                            "Name": "ollama",
                            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-api/ollama:abc",
                            "Essential": True,
                            "Environment": [
                                {"Name": "OLLAMA_HOST", "Value": f"127.0.0.1:{OLLAMA_PORT}"},
                                {"Name": "OLLAMA_NUM_PARALLEL", "Value": "4"},
                            ],
                            "ResourceRequirements": [{"Type": "GPU", "Value": "1"}],
                            "LogConfiguration": {"LogDriver": "awslogs", "Options": {
                                "awslogs-group": "ollama", "awslogs-region": "us-east-1",
                                "awslogs-stream-prefix": "ollama"}},
                        },
                    ],
                },
            },
            "Service": {
                "Type": "AWS::ECS::Service",
                "Properties": {
                    "Cluster": "llm-api-prod",
                    "TaskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/llm-api-prod:1",
                    "NetworkConfiguration": {"AwsvpcConfiguration": {
                        "AssignPublicIp": "DISABLED",
                        "SecurityGroups": [TASK_GROUP],
                        "Subnets": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                    }},
                },
            },
            "LaunchTemplate": {
                "Type": "AWS::EC2::LaunchTemplate",
                "Properties": {"LaunchTemplateData": {
                    "ImageId": "ami-0123456789abcdef0",
                    "MetadataOptions": {"HttpEndpoint": "enabled", "HttpTokens": "required",
                                        "HttpPutResponseHopLimit": 1},
                    "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
                        "VolumeSize": 100, "VolumeType": "gp3", "Encrypted": True}}],
                }},
            },
            "AlbSecurityGroup": {
                "Type": "AWS::EC2::SecurityGroup",
                "Properties": {
                    "GroupDescription": "alb", "VpcId": "vpc-0123456789abcdef0",
                    "SecurityGroupEgress": [{"CidrIp": "255.255.255.255/32", "IpProtocol": "icmp",
                                             "FromPort": 252, "ToPort": 86}],
                },
            },
            "AlbIngressHttps": {
                "Type": "AWS::EC2::SecurityGroupIngress",
                "Properties": {"GroupId": ALB_GROUP, "IpProtocol": "tcp", "FromPort": 443,
                               "ToPort": 443, "CidrIp": "0.0.0.0/0"},
            },
            "AlbIngressHttp": {
                "Type": "AWS::EC2::SecurityGroupIngress",
                "Properties": {"GroupId": ALB_GROUP, "IpProtocol": "tcp", "FromPort": 80,
                               "ToPort": 80, "CidrIp": "0.0.0.0/0"},
            },
            "TaskIngressFromAlb": {
                "Type": "AWS::EC2::SecurityGroupIngress",
                "Properties": {"GroupId": TASK_GROUP, "IpProtocol": "tcp", "FromPort": 8000,
                               "ToPort": 8000, "SourceSecurityGroupId": ALB_GROUP},
            },
            "TaskEgressHttps": {
                "Type": "AWS::EC2::SecurityGroupEgress",
                "Properties": {"GroupId": TASK_GROUP, "IpProtocol": "tcp", "FromPort": 443,
                               "ToPort": 443, "CidrIp": "0.0.0.0/0"},
            },
        },
        "Outputs": {"AlbSecurityGroupId": {"Value": ALB_GROUP}},
    }


def _container(template: dict, name: str) -> dict:
    containers = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return next(c for c in containers if c["Name"] == name)


def _lt(template: dict) -> dict:
    return template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]


def _props(template: dict, logical_id: str) -> dict:
    return template["Resources"][logical_id]["Properties"]


Mutation = Callable[[dict], None]

# rule name -> [(case name, mutation, logical ID the failure must name)]. Each mutation turns
# the compliant template into one that breaks exactly that rule.
BAD_CASES: dict[str, list[tuple[str, Mutation, str]]] = {
    "llm_ecs_service_no_public_ip": [
        ("assign-public-ip-enabled", lambda t: _props(t, "Service")["NetworkConfiguration"][
            "AwsvpcConfiguration"].update(AssignPublicIp="ENABLED"), "Service"),
    ],
    "llm_ecs_no_host_namespaces": [
        ("network-mode-host", lambda t: _props(t, "TaskDefinition").update(NetworkMode="host"),
         "TaskDefinition"),
        ("pid-mode-host", lambda t: _props(t, "TaskDefinition").update(PidMode="host"),
         "TaskDefinition"),
        ("ipc-mode-host", lambda t: _props(t, "TaskDefinition").update(IpcMode="host"),
         "TaskDefinition"),
    ],
    "llm_ecs_no_privileged_containers": [
        ("ollama-privileged", lambda t: _container(t, "ollama").update(Privileged=True),
         "TaskDefinition"),
    ],
    "llm_ecs_gateway_hardened": [
        ("writable-root-fs", lambda t: _container(t, "gateway").update(ReadonlyRootFilesystem=False),
         "TaskDefinition"),
        ("root-fs-unset", lambda t: _container(t, "gateway").pop("ReadonlyRootFilesystem"),
         "TaskDefinition"),
        ("no-user", lambda t: _container(t, "gateway").pop("User"), "TaskDefinition"),
        ("user-root", lambda t: _container(t, "gateway").update(User="root"), "TaskDefinition"),
        ("user-uid-0-with-group", lambda t: _container(t, "gateway").update(User="0:10001"),
         "TaskDefinition"),
    ],
    "llm_ecs_no_secret_names_in_environment": [
        ("api-keys-in-environment", lambda t: _container(t, "gateway")["Environment"].append(
            {"Name": "GATEWAY_API_KEYS", "Value": "k1,k2"}), "TaskDefinition"),
        ("password-in-environment", lambda t: _container(t, "ollama")["Environment"].append(
            {"Name": "DB_PASSWORD", "Value": "x"}), "TaskDefinition"),
        ("token-in-environment", lambda t: _container(t, "gateway")["Environment"].append(
            {"Name": "HF_TOKEN", "Value": "x"}), "TaskDefinition"),
    ],
    "llm_ecs_container_logging": [
        ("ollama-without-logs", lambda t: _container(t, "ollama").pop("LogConfiguration"),
         "TaskDefinition"),
        ("log-config-without-driver", lambda t: _container(t, "gateway")["LogConfiguration"].pop(
            "LogDriver"), "TaskDefinition"),
    ],
    "llm_ecs_ollama_loopback_only": [
        ("ollama-port-mapping", lambda t: _container(t, "ollama").update(
            PortMappings=[{"ContainerPort": OLLAMA_PORT}]), "TaskDefinition"),
        ("ollama-host-all-interfaces", lambda t: _container(t, "ollama")["Environment"][0].update(
            Value=f"0.0.0.0:{OLLAMA_PORT}"), "TaskDefinition"),
        ("ollama-host-unset", lambda t: _container(t, "ollama")["Environment"].pop(0),
         "TaskDefinition"),
    ],
    "llm_launch_template_imdsv2_hop_limit": [
        ("imdsv1-allowed", lambda t: _lt(t)["MetadataOptions"].update(HttpTokens="optional"),
         "LaunchTemplate"),
        ("hop-limit-2", lambda t: _lt(t)["MetadataOptions"].update(HttpPutResponseHopLimit=2),
         "LaunchTemplate"),
        ("no-metadata-options", lambda t: _lt(t).pop("MetadataOptions"), "LaunchTemplate"),
    ],
    "llm_launch_template_encrypted_volumes": [
        ("unencrypted-volume", lambda t: _lt(t)["BlockDeviceMappings"][0]["Ebs"].update(
            Encrypted=False), "LaunchTemplate"),
        ("encryption-unset", lambda t: _lt(t)["BlockDeviceMappings"][0]["Ebs"].pop("Encrypted"),
         "LaunchTemplate"),
        ("no-volumes-declared", lambda t: _lt(t).pop("BlockDeviceMappings"), "LaunchTemplate"),
    ],
    "llm_sg_no_ssh_or_ollama_port": [
        ("ssh-from-vpc", lambda t: t["Resources"].update(Ssh={
            "Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
                "GroupId": TASK_GROUP, "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                "CidrIp": "10.0.0.0/16"}}), "Ssh"),
        ("ollama-port-in-range", lambda t: t["Resources"].update(Ollama={
            "Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
                "GroupId": TASK_GROUP, "IpProtocol": "tcp", "FromPort": 11000, "ToPort": 12000,
                "SourceSecurityGroupId": ALB_GROUP}}), "Ollama"),
        ("ollama-port-egress", lambda t: t["Resources"].update(OllamaOut={
            "Type": "AWS::EC2::SecurityGroupEgress", "Properties": {
                "GroupId": ALB_GROUP, "IpProtocol": "tcp", "FromPort": OLLAMA_PORT, "ToPort": OLLAMA_PORT,
                "DestinationSecurityGroupId": TASK_GROUP}}), "OllamaOut"),
        ("all-protocols-inline", lambda t: _props(t, "AlbSecurityGroup")[
            "SecurityGroupEgress"].append({"IpProtocol": "-1", "CidrIp": "10.0.0.0/8"}),
         "AlbSecurityGroup"),
        ("ssh-inline-ingress", lambda t: _props(t, "AlbSecurityGroup").update(
            SecurityGroupIngress=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                   "CidrIp": "10.0.0.0/16"}]), "AlbSecurityGroup"),
    ],
    "llm_sg_world_ingress_only_alb_web": [
        ("world-on-task-group", lambda t: _props(t, "TaskIngressFromAlb").update(
            CidrIp="0.0.0.0/0", SourceSecurityGroupId=None) or _props(
            t, "TaskIngressFromAlb").pop("SourceSecurityGroupId"), "TaskIngressFromAlb"),
        ("world-on-alb-other-port", lambda t: _props(t, "AlbIngressHttp").update(
            FromPort=8080, ToPort=8080), "AlbIngressHttp"),
        ("world-on-alb-port-range", lambda t: _props(t, "AlbIngressHttp").update(
            FromPort=80, ToPort=443), "AlbIngressHttp"),
        ("world-ipv6-on-task-group", lambda t: t["Resources"].update(V6={
            "Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
                "GroupId": TASK_GROUP, "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                "CidrIpv6": "::/0"}}), "V6"),
        ("world-inline", lambda t: _props(t, "AlbSecurityGroup").update(
            SecurityGroupIngress=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                                   "CidrIp": "0.0.0.0/0"}]), "AlbSecurityGroup"),
        ("world-without-alb-output", lambda t: t.pop("Outputs"), "AlbIngressHttps"),
    ],
}


def bad_template(rule: str, case: str) -> dict:
    template = good_template()
    for name, mutate, _ in BAD_CASES[rule]:
        if name == case:
            mutate(template)
            return template
    raise KeyError(f"{rule}: no case {case!r}")


def all_cases() -> list[tuple[str, str, str]]:
    """(rule, case, logical ID expected in the failure) for every bad case."""
    return [(rule, case, lid) for rule, cases in BAD_CASES.items() for case, _, lid in cases]


def good_copy() -> dict:
    return copy.deepcopy(good_template())
