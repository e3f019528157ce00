"""What the project knows about each CloudFormation resource type, in one place.

From cfn-lint's bundled resource schemas (the CloudFormation registry's provider schemas), not
written here: which attributes `Fn::GetAtt` may name for a type (getatt_names; read-only
properties such as an ALB's DNSName, and settable properties that GetAtt returns as given, such
as a subnet's VpcId, which is_settable tells apart).

Written here, because no schema holds it: what `Ref` returns for a type and the form of the IDs,
names and ARNs AWS generates (the PLACEHOLDERS builders: a realistic value per type, derived
deterministically from the stack and logical ID), and how AWS derives one attribute from another
(load_balancer_full_name, target_group_full_name, scalable_target_ref). tools/render.py renders
with these; the rehearsal's moto adapter derives what moto lacks with the same functions.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

ACCOUNT_ID = "123456789012"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
SCHEMA_REGION = "us-east-1"  # cfn-lint's schemas per region differ in availability, not shape


# --- from the schemas -------------------------------------------------------------------------


@functools.cache
def _schema(type_: str):
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER  # imported only when a schema is needed

    return PROVIDER_SCHEMA_MANAGER.get_resource_schema(SCHEMA_REGION, type_)


def getatt_names(type_: str) -> frozenset[str]:
    """Every attribute Fn::GetAtt may name for the type (its schema's GetAtt table)."""
    return frozenset(_schema(type_).get_atts)


def is_settable(type_: str, attribute: str) -> bool:
    """A GetAtt name that is also a property the template sets (GetAtt returns it as given)."""
    schema = _schema(type_).schema
    read_only = {path.split("/")[2] for path in schema.get("readOnlyProperties", [])
                 if path.count("/") == 2}
    return attribute in schema.get("properties", {}) and attribute not in read_only


# --- how AWS derives one value from another ---------------------------------------------------


def load_balancer_full_name(arn: str) -> str:
    """LoadBalancerFullName: the ARN's resource part after "loadbalancer/" (app/<name>/<id>)."""
    return arn.split(":loadbalancer/", 1)[1]


def target_group_full_name(arn: str) -> str:
    """TargetGroupFullName: the ARN's resource part (targetgroup/<name>/<id>)."""
    return arn.split(":", 5)[5]


def scalable_target_ref(resource_id: str, dimension: str, namespace: str) -> str:
    """Ref of an AWS::ApplicationAutoScaling::ScalableTarget: "<id>|<dimension>|<namespace>"."""
    return f"{resource_id}|{dimension}|{namespace}"


# --- what only a deployment knows: a realistic value per type ------------------------------


@dataclass
class Context:
    stack_name: str
    region: str
    account: str = ACCOUNT_ID

    def hex(self, logical_id: str, salt: str = "", length: int = 17) -> str:
        digest = hashlib.sha256(f"{self.stack_name}/{logical_id}/{salt}".encode()).hexdigest()
        return digest[:length]

    def uuid(self, logical_id: str) -> str:
        return str(uuid.UUID(self.hex(logical_id, "uuid", 32)))

    def suffix(self, logical_id: str, length: int = 12) -> str:
        """CloudFormation's random suffix of generated names (upper-case letters and digits)."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        number = int(self.hex(logical_id, "suffix", 32), 16)
        chars = []
        for _ in range(length):
            number, index = divmod(number, len(alphabet))
            chars.append(alphabet[index])
        return "".join(chars)

    def generated_name(self, logical_id: str, max_length: int = 255, lower: bool = False) -> str:
        name = f"{self.stack_name}-{logical_id}-{self.suffix(logical_id)}"[:max_length]
        return name.lower() if lower else name

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (f"arn:{PARTITION}:{service}:{self.region if region else ''}:"
                f"{self.account if account else ''}:{resource}")


# A placeholder builder gets (context, logical ID, properties resolvable before rendering) and
# returns (value of Ref, {attribute: value}).
Placeholder = Callable[[Context, str, dict], tuple[object, dict[str, object]]]


# Offered by the generic builders below; placeholder() keeps them only where the type's schema
# has them (a VPC endpoint has an Id attribute, a route table does not).
GENERIC_ATTRIBUTES = frozenset({"Id", "Arn", "Name"})


def placeholder(type_: str, ctx: Context, lid: str, props: dict) -> tuple[object, dict[str, object]]:
    """(Ref value, {GetAtt name: value}) of a resource; (logical ID, {}) for an unknown type."""
    builder = PLACEHOLDERS.get(type_)
    if builder is None:
        return lid, {}
    ref, attributes = builder(ctx, lid, props)
    names = getatt_names(type_)
    return ref, {name: value for name, value in attributes.items()
                 if name in names or name not in GENERIC_ATTRIBUTES}


def _ec2_id(prefix: str, extra: Callable[[Context, str, dict, str], dict] | None = None) -> Placeholder:
    def build(ctx: Context, lid: str, props: dict):
        ident = f"{prefix}-{ctx.hex(lid)}"
        attrs = {"Id": ident}
        if extra:
            attrs.update(extra(ctx, lid, props, ident))
        return ident, attrs
    return build


def _vpc(ctx, lid, props, ident):
    return {"VpcId": ident, "DefaultSecurityGroup": f"sg-{ctx.hex(lid, 'default-sg')}",
            "DefaultNetworkAcl": f"acl-{ctx.hex(lid, 'default-acl')}"}


def _subnet(ctx, lid, props, ident):
    return {"SubnetId": ident}


def _security_group(ctx, lid, props, ident):
    return {"GroupId": ident}


def _eip(ctx: Context, lid: str, props: dict):
    number = int(ctx.hex(lid, "ip", 8), 16)
    ip = f"198.51.100.{number % 254 + 1}"  # TEST-NET-2: documentation addresses
    return ip, {"AllocationId": f"eipalloc-{ctx.hex(lid)}", "PublicIp": ip}


def _launch_template(ctx, lid, props, ident):
    return {"LaunchTemplateId": ident, "LatestVersionNumber": "1", "DefaultVersionNumber": "1"}


def _named(service: str, arn_resource: str, name_prop: str | None, *, region: bool = True,
           account: bool = True, lower: bool = False, max_length: int = 255,
           ref: str = "name", extra: Callable | None = None) -> Placeholder:
    """Resources whose Ref is a name (explicit or generated) or their ARN.

    arn_resource is a format string with {name}; ref is "name" or "arn".
    """
    def build(ctx: Context, lid: str, props: dict):
        name = props.get(name_prop) if name_prop else None
        if not isinstance(name, str):
            name = ctx.generated_name(lid, max_length=max_length, lower=lower)
        arn = ctx.arn(service, arn_resource.format(name=name, ctx=ctx, lid=lid), region, account)
        attrs = {"Arn": arn, "Name": name}
        if extra:
            attrs.update(extra(ctx, lid, props, name, arn))
        return (arn if ref == "arn" else name), attrs
    return build


def _log_group(ctx: Context, lid: str, props: dict):
    name = props.get("LogGroupName")
    if not isinstance(name, str):
        name = ctx.generated_name(lid, max_length=512)
    return name, {"Arn": ctx.arn("logs", f"log-group:{name}:*")}


def _role(ctx: Context, lid: str, props: dict):
    name = props.get("RoleName")
    if not isinstance(name, str):
        name = ctx.generated_name(lid, max_length=64)
    path = props.get("Path", "/") if isinstance(props.get("Path", "/"), str) else "/"
    return name, {"Arn": ctx.arn("iam", f"role{path}{name}", region=False),
                  "RoleId": "AROA" + ctx.hex(lid, "role", 17).upper()}


def _instance_profile(ctx: Context, lid: str, props: dict):
    name = props.get("InstanceProfileName")
    if not isinstance(name, str):
        name = ctx.generated_name(lid, max_length=128)
    return name, {"Arn": ctx.arn("iam", f"instance-profile/{name}", region=False)}


def _kms_key(ctx: Context, lid: str, props: dict):
    key_id = ctx.uuid(lid)
    return key_id, {"Arn": ctx.arn("kms", f"key/{key_id}"), "KeyId": key_id}


def _secret(ctx: Context, lid: str, props: dict):
    name = props.get("Name")
    if not isinstance(name, str):
        name = f"{lid}-{ctx.suffix(lid)}"
    arn = ctx.arn("secretsmanager", f"secret:{name}-{ctx.suffix(lid, 6)}")
    return arn, {"Id": arn}


def _ssm_parameter(ctx: Context, lid: str, props: dict):
    name = props.get("Name")
    if not isinstance(name, str):
        name = f"CFN-{lid}-{ctx.suffix(lid)}"
    return name, {}


def _ecr_repository(ctx: Context, lid: str, props: dict):
    name = props.get("RepositoryName")
    if not isinstance(name, str):
        name = ctx.generated_name(lid, lower=True)
    return name, {
        "Arn": ctx.arn("ecr", f"repository/{name}"),
        "RepositoryUri": f"{ctx.account}.dkr.ecr.{ctx.region}.{URL_SUFFIX}/{name}",
    }


def _nested_stack(ctx: Context, lid: str, props: dict):
    arn = ctx.arn("cloudformation", f"stack/{ctx.stack_name}-{lid}-{ctx.suffix(lid)}/{ctx.uuid(lid)}")
    return arn, {}


def _task_definition(ctx: Context, lid: str, props: dict):
    family = props.get("Family")
    if not isinstance(family, str):
        family = ctx.generated_name(lid)
    arn = ctx.arn("ecs", f"task-definition/{family}:1")
    return arn, {"TaskDefinitionArn": arn}


def _ecs_service(ctx: Context, lid: str, props: dict):
    name = props.get("ServiceName")
    if not isinstance(name, str):
        name = ctx.generated_name(lid)
    cluster = props.get("Cluster", "default")
    cluster_name = cluster.rsplit("/", 1)[-1] if isinstance(cluster, str) else "default"
    arn = ctx.arn("ecs", f"service/{cluster_name}/{name}")
    return arn, {"Name": name, "ServiceArn": arn}


def _load_balancer(ctx: Context, lid: str, props: dict):
    name = props.get("Name")
    if not isinstance(name, str):
        name = f"{ctx.stack_name[:16]}-{ctx.suffix(lid, 10)}"
    arn = ctx.arn("elasticloadbalancing", f"loadbalancer/app/{name}/{ctx.hex(lid, 'lb', 16)}")
    return arn, {
        "LoadBalancerArn": arn, "LoadBalancerFullName": load_balancer_full_name(arn),
        "LoadBalancerName": name,
        "DNSName": f"{name}-{int(ctx.hex(lid, 'dns', 8), 16)}.{ctx.region}.elb.{URL_SUFFIX}",
        "CanonicalHostedZoneID": "Z35SXDOTRQ7X7K",
    }


def _target_group(ctx: Context, lid: str, props: dict):
    name = props.get("Name")
    if not isinstance(name, str):
        name = f"{ctx.stack_name[:16]}-{ctx.suffix(lid, 10)}"
    arn = ctx.arn("elasticloadbalancing", f"targetgroup/{name}/{ctx.hex(lid, 'tg', 16)}")
    return arn, {"TargetGroupArn": arn, "TargetGroupFullName": target_group_full_name(arn),
                 "TargetGroupName": name, "LoadBalancerArns": []}


def _scalable_target(ctx: Context, lid: str, props: dict):
    resource_id = props.get("ResourceId", f"service/{ctx.stack_name}/{ctx.generated_name(lid)}")
    return scalable_target_ref(str(resource_id), str(props.get("ScalableDimension", "")),
                               str(props.get("ServiceNamespace", ""))), {}


def _arn_ref(service: str, resource: str, extra_attrs: tuple[str, ...] = ()) -> Placeholder:
    def build(ctx: Context, lid: str, props: dict):
        arn = ctx.arn(service, resource.format(name=ctx.generated_name(lid), hex=ctx.hex(lid),
                                               uuid=ctx.uuid(lid)))
        return arn, {attr: arn for attr in extra_attrs}
    return build


def _web_acl(ctx: Context, lid: str, props: dict):
    name = props.get("Name")
    if not isinstance(name, str):
        name = ctx.generated_name(lid, max_length=128)
    ident = ctx.uuid(lid)
    arn = ctx.arn("wafv2", f"regional/webacl/{name}/{ident}")
    return f"{name}|{ident}|REGIONAL", {"Arn": arn, "Id": ident}


def _bucket(ctx: Context, lid: str, props: dict):
    name = props.get("BucketName")
    if not isinstance(name, str):
        name = ctx.generated_name(lid, max_length=63, lower=True)
    return name, {
        "Arn": f"arn:{PARTITION}:s3:::{name}",
        "DomainName": f"{name}.s3.{URL_SUFFIX}",
        "RegionalDomainName": f"{name}.s3.{ctx.region}.{URL_SUFFIX}",
    }


PLACEHOLDERS: dict[str, Placeholder] = {
    "AWS::EC2::VPC": _ec2_id("vpc", _vpc),
    "AWS::EC2::Subnet": _ec2_id("subnet", _subnet),
    "AWS::EC2::SecurityGroup": _ec2_id("sg", _security_group),
    "AWS::EC2::SecurityGroupIngress": _ec2_id("sgr"),
    "AWS::EC2::SecurityGroupEgress": _ec2_id("sgr"),
    "AWS::EC2::RouteTable": _ec2_id("rtb", lambda _ctx, _lid, _props, i: {"RouteTableId": i}),
    "AWS::EC2::Route": _ec2_id("r-rtb"),
    "AWS::EC2::SubnetRouteTableAssociation": _ec2_id("rtbassoc"),
    "AWS::EC2::InternetGateway": _ec2_id("igw", lambda _ctx, _lid, _props, i: {"InternetGatewayId": i}),
    "AWS::EC2::VPCGatewayAttachment": _ec2_id("igw-attach"),
    "AWS::EC2::NatGateway": _ec2_id("nat"),
    "AWS::EC2::EIP": _eip,
    "AWS::EC2::VPCEndpoint": _ec2_id("vpce", lambda _ctx, _lid, _props, i: {
        "DnsEntries": [], "NetworkInterfaceIds": []}),
    "AWS::EC2::FlowLog": _ec2_id("fl"),
    "AWS::EC2::LaunchTemplate": _ec2_id("lt", _launch_template),
    "AWS::Logs::LogGroup": _log_group,
    "AWS::IAM::Role": _role,
    "AWS::IAM::InstanceProfile": _instance_profile,
    "AWS::IAM::ManagedPolicy": _named("iam", "policy/{name}", "ManagedPolicyName", region=False,
                                      ref="arn", extra=lambda _ctx, _lid, _props, n, a: {"PolicyArn": a}),
    "AWS::IAM::Policy": _ec2_id("policy"),
    "AWS::KMS::Key": _kms_key,
    "AWS::KMS::Alias": lambda ctx, lid, props: (props.get("AliasName", f"alias/{lid}"), {}),
    "AWS::SecretsManager::Secret": _secret,
    "AWS::SSM::Parameter": _ssm_parameter,
    "AWS::ECR::Repository": _ecr_repository,
    "AWS::CloudFormation::Stack": _nested_stack,
    "AWS::CloudFormation::WaitConditionHandle": lambda ctx, lid, props: (
        f"https://cloudformation-waitcondition-{ctx.region}.s3.{URL_SUFFIX}/{ctx.hex(lid)}", {}),
    "AWS::ECS::Cluster": _named("ecs", "cluster/{name}", "ClusterName"),
    "AWS::ECS::TaskDefinition": _task_definition,
    "AWS::ECS::Service": _ecs_service,
    "AWS::ECS::CapacityProvider": lambda ctx, lid, props: (props.get("Name", ctx.generated_name(lid)), {}),
    "AWS::ECS::ClusterCapacityProviderAssociations": _ec2_id("ccpa"),
    "AWS::AutoScaling::AutoScalingGroup": lambda ctx, lid, props: (
        props.get("AutoScalingGroupName", ctx.generated_name(lid)), {}),
    "AWS::AutoScaling::WarmPool": _ec2_id("warmpool"),
    # Ref: the policy's ARN; the hook's name.
    "AWS::AutoScaling::ScalingPolicy": _arn_ref(
        "autoscaling", "scalingPolicy:{uuid}:autoScalingGroupName/{name}:policyName/{name}"),
    "AWS::AutoScaling::LifecycleHook": lambda ctx, lid, props: (
        props.get("LifecycleHookName", ctx.generated_name(lid)), {}),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": _load_balancer,
    "AWS::ElasticLoadBalancingV2::TargetGroup": _target_group,
    "AWS::ElasticLoadBalancingV2::Listener": _arn_ref(
        "elasticloadbalancing", "listener/app/lb/{hex}/{uuid}", ("ListenerArn",)),
    "AWS::ElasticLoadBalancingV2::ListenerRule": _arn_ref(
        "elasticloadbalancing", "listener-rule/app/lb/{hex}/{uuid}", ("RuleArn",)),
    "AWS::CertificateManager::Certificate": _arn_ref("acm", "certificate/{uuid}"),
    "AWS::S3::Bucket": _bucket,
    "AWS::S3::BucketPolicy": _ec2_id("bucketpolicy"),
    "AWS::WAFv2::WebACL": _web_acl,
    "AWS::WAFv2::WebACLAssociation": _ec2_id("webaclassoc"),
    "AWS::Route53::RecordSet": lambda ctx, lid, props: (props.get("Name", lid), {}),
    "AWS::CloudWatch::Alarm": _named("cloudwatch", "alarm:{name}", "AlarmName"),
    "AWS::SNS::Topic": _named("sns", "{name}", "TopicName", ref="arn",
                              extra=lambda _ctx, _lid, _props, n, a: {"TopicArn": a, "TopicName": n}),
    "AWS::SNS::Subscription": _arn_ref("sns", "{name}:{uuid}"),
    "AWS::SNS::TopicPolicy": _ec2_id("topicpolicy"),
    "AWS::Events::Rule": _named("events", "rule/{name}", "Name"),
    "AWS::CloudWatch::Dashboard": lambda ctx, lid, props: (
        props.get("DashboardName", ctx.generated_name(lid)), {}),
    "AWS::ApplicationAutoScaling::ScalableTarget": _scalable_target,
    "AWS::ApplicationAutoScaling::ScalingPolicy": _arn_ref(
        "autoscaling", "scalingPolicy:{uuid}:resource/ecs/policyName/{name}"),
}
