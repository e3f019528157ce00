"""Security layer: the security groups and every rule between them.

Each group declares only a "match nothing" egress rule (so EC2 drops its default allow-all
egress); every real rule is a separate resource with a description, so groups can name each
other without a cycle. Nothing opens the Ollama port or SSH: Ollama is reachable only on the
task's loopback, and shell access to instances is SSM Session Manager.
"""

from __future__ import annotations

from troposphere import GetAtt, Ref, Sub, Tags, ec2

from app.contract import GATEWAY_PORT
from stacks import names
from stacks.base import Layer, add_output, cdk_style_no_egress, scanner_skips
from stacks.parameters import Param, string

HTTPS = 443
HTTP = 80


class SecurityLayer(Layer):
    logical_id = "Security"
    file_name = "security.json"
    description = "Security: security groups for the ALB, tasks, GPU instances and VPC endpoints"

    def parameters(self):
        return (
            Param(names.VPC_ID, "AWS::EC2::VPC::Id", "VPC of the stack"),
            string(names.VPC_CIDR, "VPC CIDR block (endpoint ingress)"),
            string(names.ALB_INGRESS_CIDR,
                   "CIDR allowed to reach the load balancer on 443 (and 80, which only "
                   "redirects); 0.0.0.0/0 for a public API, a corporate range to keep it private",
                   default="0.0.0.0/0",
                   pattern=r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}/\d{1,2}$",
                   constraint="an IPv4 CIDR such as 0.0.0.0/0 or 203.0.113.0/24"),
        )

    def build(self):
        t = self.new_template()
        declared = self.add_parameters(t)
        vpc_id, vpc_cidr, alb_cidr = (declared[n] for n in (names.VPC_ID, names.VPC_CIDR,
                                                             names.ALB_INGRESS_CIDR))

        def group(title: str, purpose: str) -> ec2.SecurityGroup:
            return t.add_resource(ec2.SecurityGroup(
                title, GroupDescription=purpose, VpcId=Ref(vpc_id),
                SecurityGroupEgress=[cdk_style_no_egress()],
                Tags=Tags(Name=Sub("${AWS::StackName}-" + title)),
            ))

        alb = group("AlbSecurityGroup", "Load balancer: HTTPS in from clients, HTTP in for the "
                    "redirect, out only to the gateway port of the tasks")
        task = group("TaskSecurityGroup", "Gateway tasks: in from the load balancer on the "
                     "gateway port only (Ollama listens on loopback), out to HTTPS")
        instance = group("InstanceSecurityGroup", "GPU container instances: no ingress (SSM "
                         "Session Manager, not SSH), out to HTTPS for ECS, ECR and SSM")
        endpoint = group("EndpointSecurityGroup", "Interface VPC endpoints: HTTPS in from the "
                         "VPC, no egress")

        def rule(title, kind, group_, port, description, metadata=None, **peer):
            cls = ec2.SecurityGroupIngress if kind == "in" else ec2.SecurityGroupEgress
            extra = {"Metadata": metadata} if metadata else {}
            return t.add_resource(cls(
                title, GroupId=GetAtt(group_, "GroupId"), IpProtocol="tcp", FromPort=port,
                ToPort=port, Description=description, **peer, **extra,
            ))

        rule("AlbIngressHttps", "in", alb, HTTPS, "HTTPS from allowed clients",
             CidrIp=Ref(alb_cidr))
        rule("AlbIngressHttp", "in", alb, HTTP, "HTTP from allowed clients, redirected to HTTPS",
             CidrIp=Ref(alb_cidr), metadata=scanner_skips(checkov={
                 "CKV_AWS_260": "Port 80 is open only so the listener can answer 301 to HTTPS; "
                 "the HTTP listener has no forward action (a test proves it).",
             }))
        rule("AlbEgressToTasks", "out", alb, GATEWAY_PORT, "To the gateway port of the tasks",
             DestinationSecurityGroupId=GetAtt(task, "GroupId"))
        rule("TaskIngressFromAlb", "in", task, GATEWAY_PORT, "Gateway port from the load "
             "balancer only", SourceSecurityGroupId=GetAtt(alb, "GroupId"))
        rule("TaskEgressHttps", "out", task, HTTPS, "HTTPS to AWS APIs (ECS Exec, endpoints, "
             "NAT)", CidrIp="0.0.0.0/0")
        rule("InstanceEgressHttps", "out", instance, HTTPS, "HTTPS to ECS, ECR, S3, SSM and "
             "package repositories", CidrIp="0.0.0.0/0")
        rule("EndpointIngressHttps", "in", endpoint, HTTPS, "HTTPS from inside the VPC",
             CidrIp=Ref(vpc_cidr))

        add_output(t, names.ALB_SECURITY_GROUP_ID, GetAtt(alb, "GroupId"),
                   "Security group of the load balancer")
        add_output(t, names.TASK_SECURITY_GROUP_ID, GetAtt(task, "GroupId"),
                   "Security group of the gateway tasks (awsvpc ENIs)")
        add_output(t, names.INSTANCE_SECURITY_GROUP_ID, GetAtt(instance, "GroupId"),
                   "Security group of the GPU container instances")
        add_output(t, names.ENDPOINT_SECURITY_GROUP_ID, GetAtt(endpoint, "GroupId"),
                   "Security group of the interface VPC endpoints")
        return t

