"""Endpoints layer: interface VPC endpoints for the AWS APIs that tasks and instances call.

Optional (root parameter InterfaceEndpoints): with it off, that traffic goes through NAT. It is
its own layer because the endpoints need the security layer's group, which needs the network
layer's VPC; root creates this stack only when the parameter is "true".
"""

from __future__ import annotations

from troposphere import Ref, Sub, ec2

from stacks import names
from stacks.base import Layer
from stacks.parameters import Param

# (logical ID, service suffix after com.amazonaws.<region>.)
INTERFACE_SERVICES = (
    ("EcrApiEndpoint", "ecr.api"),
    ("EcrDkrEndpoint", "ecr.dkr"),
    ("LogsEndpoint", "logs"),
    ("SsmEndpoint", "ssm"),
    ("SecretsManagerEndpoint", "secretsmanager"),
    ("EcsEndpoint", "ecs"),
    ("EcsAgentEndpoint", "ecs-agent"),
    ("EcsTelemetryEndpoint", "ecs-telemetry"),
)


class EndpointsLayer(Layer):
    logical_id = "Endpoints"
    file_name = "endpoints.json"
    description = "Endpoints: interface VPC endpoints for ECR, CloudWatch Logs, SSM, Secrets Manager, ECS"
    root_condition = ("InterfaceEndpointsEnabled", names.INTERFACE_ENDPOINTS, "true")

    def parameters(self):
        return (
            Param(names.VPC_ID, "AWS::EC2::VPC::Id", "VPC of the stack"),
            Param(names.PRIVATE_SUBNET_IDS, "List<AWS::EC2::Subnet::Id>",
                  "Private subnets, one per AZ"),
            Param(names.ENDPOINT_SECURITY_GROUP_ID, "AWS::EC2::SecurityGroup::Id",
                  "Security group of the endpoints"),
        )

    def build(self):
        t = self.new_template()
        declared = self.add_parameters(t)
        vpc_id, subnets, group = (declared[n] for n in (
            names.VPC_ID, names.PRIVATE_SUBNET_IDS, names.ENDPOINT_SECURITY_GROUP_ID))
        for title, service in INTERFACE_SERVICES:
            t.add_resource(ec2.VPCEndpoint(
                title, VpcId=Ref(vpc_id), VpcEndpointType="Interface",
                ServiceName=Sub(f"com.amazonaws.${{AWS::Region}}.{service}"),
                SubnetIds=Ref(subnets), SecurityGroupIds=[Ref(group)], PrivateDnsEnabled=True,
            ))
        return t
