"""A thin adapter that lets moto 5.2.5's CloudFormation run this project's nested templates.

The rehearsal proves WIRING (every child Parameter gets a value, every Output resolves, the
deploy commands work end to end); it does not prove AWS behaviour. Run as a module, this file
applies the patches below and serves moto on 127.0.0.1 (a free port, printed as `PORT=<n>`):

    python -m tests.rehearsal.moto_adapter

Patches, each on moto's own classes or backends (nothing else is changed):

 1. Nested stack outputs: `Fn::GetAtt <Child>.Outputs.<Name>` (stock moto: AttributeError, a 500).
    A missing output fails loudly, naming the child and the outputs it has.
 2. Change-set executions: a stack created or updated through a change set (what
    `aws cloudformation deploy` does) gets its template and Outputs (stock moto: no Outputs).
 3. Nested stack failures name the nested stack's logical ID ("Embedded stack Security
    failed: Missing parameter VpcId"), as AWS's status reason does; a list passed as a nested
    stack parameter is refused, as AWS refuses it (stock moto: a cryptic AttributeError).
 4. AWS::SecretsManager::Secret, on moto's Secrets Manager backend (GenerateSecretString
    honoured: length, punctuation, space, template/key).
 5. AWS::CertificateManager::Certificate, on moto's ACM backend (no DNS validation).
 6. AWS::ECS::CapacityProvider, on moto's ECS backend.
 7. AWS::ECS::ClusterCapacityProviderAssociations, on moto's ECS backend.
 8. AWS::ApplicationAutoScaling::ScalableTarget, on moto's Application Auto Scaling backend
    (Ref is "<resource id>|<dimension>|<namespace>", as in AWS).
 9. AWS::ApplicationAutoScaling::ScalingPolicy, same backend (Ref and GetAtt Arn: the ARN).
10. Fn::Cidr (stock moto leaves it unresolved, so Fn::Select over it fails with KeyError).
11. An SSM-typed parameter (AWS::SSM::Parameter::Value<...>) whose key is not in Parameter
    Store fails with AWS's message (stock moto: AttributeError on None).
12. ELBv2 Fn::GetAtt: LoadBalancer LoadBalancerFullName, CanonicalHostedZoneID and
    SecurityGroups; TargetGroup TargetGroupFullName, TargetGroupName, TargetGroupArn and
    LoadBalancerArns (stock moto: unresolved, or AttributeError for every TargetGroup GetAtt).
13. S3 bucket policies: statements with a Condition are left out of moto's evaluation (moto
    ignores conditions, so the artifact bucket's "Deny unless aws:SecureTransport" would deny
    every request; over TLS, as in AWS, that statement does not apply).
14. DescribeStacks shows a List/CommaDelimitedList parameter comma-joined, as AWS does (stock
    moto: the Python repr of a list, "['a', 'b']").
15. UpdateTerminationProtection (an API action moto lacks): sets the flag DescribeStacks shows.
16. An ALB created by CloudFormation gets its LoadBalancerAttributes (stock moto drops them, so
    prod's deletion_protection.enabled=true never reached the emulator).
17. ELB deletion protection, as ELB enforces it: DeleteLoadBalancer on a load balancer with
    deletion_protection.enabled=true answers OperationNotPermitted ("You can't delete a load
    balancer if deletion protection is enabled", ELB API reference, DeleteLoadBalancer:
    https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DeleteLoadBalancer.html;
    the error code is the documented one, the message text is ours). Stock moto deletes it.
18. A stack delete that a resource refuses ends DELETE_FAILED, as in AWS: the stack stays, with
    a DELETE_FAILED event for the refusing resource (its reason) and one per enclosing stack
    (stock moto drops the stack from its list and answers DeleteStack with an error).
19-21. AWS::AutoScaling::ScalingPolicy, LifecycleHook and WarmPool, on moto's autoscaling
    backend (tests/rehearsal/moto_autoscaling.py, which says what moto does not do with them).

Stock moto skips these types silently, and outputs that refer to them vanish: the rehearsal
therefore lists every skipped resource it deployed (UNMODELLED below names the ones we know).

What moto does NOT model, so the rehearsal cannot catch it (cfn-lint, checkov and the template
tests cover the static part; a real deploy covers the rest):
 - no resource is ever in progress or failed for AWS reasons: no GPU capacity, quotas, AMI or
   AZ offerings, ACM DNS validation, image pulls, health checks, circuit-breaker rollbacks;
 - IAM is not evaluated (policies, trust, KMS key policies are stored, never enforced), and a
   role's ManagedPolicyArns are dropped (inline policies and AWS::IAM::Policy are stored);
 - the ECS service ignores LoadBalancers, CapacityProviderStrategy, NetworkConfiguration and
   DeploymentConfiguration from the template, and never starts a task;
 - skipped silently (created nowhere): CloudWatch alarms, SNS subscriptions and topic
   policies, S3 bucket policies, security-group egress rules, WAF (UNMODELLED); a
   ScalableTarget's ScheduledActions are ignored;
 - listener rules are stored and DescribeRules returns them, but moto routes no request: the
   rehearsal evaluates them offline (tests/stacks/alb_sim.py), as it does the alarms;
 - change sets list no nested changes; an update recreates every changed child stack; deleting
   a stack leaks resources; rollback does not exist; property validation is minimal (and
   some properties are stored but never shown, e.g. an ECR repository's ScanOnPush);
 - `aws cloudformation package` uploads to moto only when AWS_ENDPOINT_URL is
   http://localhost:PORT (moto reads nested TemplateURLs by that host name);
 - an AWS::SSM::Parameter without an explicit Name fails (our templates always name them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import signal
import sys
import threading
from typing import Any

from tests.rehearsal import moto_autoscaling
from tools import cfn_types

# Resource types the adapter registers (patches 4-9, 19-21).
ADAPTED_TYPES = (
    "AWS::SecretsManager::Secret",
    "AWS::CertificateManager::Certificate",
    "AWS::ECS::CapacityProvider",
    "AWS::ECS::ClusterCapacityProviderAssociations",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
) + moto_autoscaling.TYPES

# Types moto 5.2.5 skips silently that the adapter deliberately leaves alone: the rehearsal
# reports them as "not created" instead of pretending.
UNMODELLED = (
    "AWS::CloudWatch::Alarm",
    "AWS::SNS::Subscription",
    "AWS::SNS::TopicPolicy",
    "AWS::S3::BucketPolicy",
    "AWS::EC2::SecurityGroupEgress",
    "AWS::WAFv2::WebACL",
    "AWS::WAFv2::WebACLAssociation",
)

_applied = False
_MODULE = "moto.cloudformation.rehearsal_adapter"


def _camel(value: Any) -> Any:
    """CloudFormation property case (PascalCase) to ECS API case (camelCase), recursively."""
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: _camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value


def _tags(properties: dict) -> list[dict[str, str]]:
    return [{"Key": t["Key"], "Value": t["Value"]} for t in properties.get("Tags", [])]


def apply() -> None:
    # One function keeps every patch in one place.
    """Apply every patch (idempotent). Only call this in the process that serves moto."""
    global _applied
    if _applied:
        return
    _applied = True

    from moto.acm.models import acm_backends
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    from moto.cloudformation import models as cfn_models
    from moto.cloudformation import parsing
    from moto.cloudformation.exceptions import CloudFormationError, ValidationError
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.core.common_models import CloudFormationModel
    from moto.core.responses import ActionResult
    from moto.ecs.models import ecs_backends
    from moto.secretsmanager.models import secretsmanager_backends

    # 1. Fn::GetAtt <Child>.Outputs.<Name>
    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if not attribute_name.startswith("Outputs."):
            raise ValidationError(message=f"Template error: nested stack {self.name} has no "
                                          f"attribute {attribute_name}")
        name = attribute_name.split(".", 1)[1]
        output = self.output_map[name] if name in self.output_map.outputs else None
        if output is None:
            have = ", ".join(sorted(o.key for o in self.output_map.values() if o)) or "none"
            raise ValidationError(message=f"Template error: nested stack {self.name} has no "
                                          f"resolved output {name} (resolved outputs: {have})")
        return output.value

    cfn_models.Stack.get_cfn_attribute = get_cfn_attribute

    # 2. Change-set executions get the template and Outputs of the change set.
    original_apply = cfn_models.ChangeSet.apply

    def apply_change_set(self) -> None:
        original_apply(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        if self.parameters:
            stack.parameters = self.parameters
        if self.tags is not None:
            stack.tags = self.tags
        stack.output_map = stack._create_output_map()
        [stack.output_map[key] for key in stack.output_map.outputs]  # resolve now: fail here

    cfn_models.ChangeSet.apply = apply_change_set

    # 3. Nested stack failures name the nested stack.
    original_create = cfn_models.Stack.create_from_cloudformation_json.__func__

    def create_nested(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        logical_id = kwargs.get("LogicalId", resource_name)
        for name, value in cloudformation_json["Properties"].get("Parameters", {}).items():
            if isinstance(value, (list, dict)):
                # AWS refuses this too: nested stack parameters are strings; a List<...> or
                # CommaDelimitedList parameter must be passed as {"Fn::Join": [",", ...]}.
                raise ValidationError(message=(
                    f"Embedded stack {logical_id} failed: parameter {name} is a "
                    f"{type(value).__name__}, not a string; nested stack parameters must be "
                    'strings (pass a list as {"Fn::Join": [",", {"Ref": "' + name + '"}]})'))
        try:
            return original_create(cls, resource_name, cloudformation_json, account_id,
                                   region_name, **kwargs)
        except CloudFormationError as error:
            raise ValidationError(message=f"Embedded stack {logical_id} failed: "
                                          f"{error.message}") from error
        except (KeyError, AttributeError, TypeError) as error:
            raise ValidationError(message=f"Embedded stack {logical_id} failed: "
                                          f"{type(error).__name__}: {error}") from error

    cfn_models.Stack.create_from_cloudformation_json = classmethod(create_nested)

    # 4-9. Resource types, registered on moto's own backends.
    _Adapted = moto_autoscaling.adapted_base()

    class Secret(_Adapted, CloudFormationModel):
        __module__ = _MODULE  # moto's model registry keys models by its 2nd part

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SecretsManager::Secret"

        @staticmethod
        def cloudformation_name_type() -> str:
            return "Name"

        @classmethod
        def attributes(cls):
            return {"Id": "physical_id"}

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name, **kwargs):
            props = cloudformation_json["Properties"]
            backend = secretsmanager_backends[account_id][region_name]
            value = props.get("SecretString")
            generate = props.get("GenerateSecretString")
            if generate is not None:
                password = backend.get_random_password(
                    password_length=int(generate.get("PasswordLength", 32)),
                    exclude_characters=generate.get("ExcludeCharacters", ""),
                    exclude_numbers=_bool(generate.get("ExcludeNumbers")),
                    exclude_punctuation=_bool(generate.get("ExcludePunctuation")),
                    exclude_uppercase=_bool(generate.get("ExcludeUppercase")),
                    exclude_lowercase=_bool(generate.get("ExcludeLowercase")),
                    include_space=_bool(generate.get("IncludeSpace")),
                    require_each_included_type=_bool(generate.get("RequireEachIncludedType",
                                                                  True)),
                )
                password = json.loads(password)["RandomPassword"]
                if generate.get("SecretStringTemplate"):
                    document = json.loads(generate["SecretStringTemplate"])
                    document[generate["GenerateStringKey"]] = password
                    password = json.dumps(document)
                value = password
            created = json.loads(backend.create_secret(
                name=resource_name, secret_string=value, secret_binary=None,
                description=props.get("Description"), tags=_tags(props),
                kms_key_id=props.get("KmsKeyId"), client_request_token=None,
                replica_regions=[], force_overwrite=False,
            ))
            secret = cls()
            secret.physical_id = created["ARN"]
            return secret

        def remove(self, account_id, region_name):
            secretsmanager_backends[account_id][region_name].delete_secret(
                self.physical_id, recovery_window_in_days=None,
                force_delete_without_recovery=True)

    class Certificate(_Adapted, CloudFormationModel):
        __module__ = _MODULE  # moto's model registry keys models by its 2nd part

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CertificateManager::Certificate"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name, **kwargs):
            props = cloudformation_json["Properties"]
            arn = acm_backends[account_id][region_name].request_certificate(
                domain_name=props["DomainName"], idempotency_token=None,
                subject_alt_names=props.get("SubjectAlternativeNames", []), tags=_tags(props),
            )
            certificate = cls()
            certificate.physical_id = arn
            return certificate

        def remove(self, account_id, region_name):
            acm_backends[account_id][region_name].delete_certificate(self.physical_id)

    class CapacityProvider(_Adapted, CloudFormationModel):
        __module__ = _MODULE  # moto's model registry keys models by its 2nd part

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::ECS::CapacityProvider"

        @staticmethod
        def cloudformation_name_type() -> str:
            return "Name"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name, **kwargs):
            props = cloudformation_json["Properties"]
            provider = ecs_backends[account_id][region_name].create_capacity_provider(
                resource_name, _camel(props["AutoScalingGroupProvider"]),
                [{"key": t["Key"], "value": t["Value"]} for t in props.get("Tags", [])],
            )
            adapted = cls()
            adapted.physical_id = provider.name
            return adapted

        def remove(self, account_id, region_name):
            ecs_backends[account_id][region_name].delete_capacity_provider(self.physical_id)

    class ClusterCapacityProviderAssociations(_Adapted, CloudFormationModel):
        __module__ = _MODULE  # moto's model registry keys models by its 2nd part

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::ECS::ClusterCapacityProviderAssociations"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name, **kwargs):
            props = cloudformation_json["Properties"]
            cluster = props["Cluster"]
            cluster = getattr(cluster, "name", cluster)
            ecs_backends[account_id][region_name].put_cluster_capacity_providers(
                cluster, props.get("CapacityProviders", []),
                _camel(props.get("DefaultCapacityProviderStrategy", [])),
            )
            adapted = cls()
            adapted.physical_id = cluster
            return adapted

        def remove(self, account_id, region_name):
            ecs_backends[account_id][region_name].put_cluster_capacity_providers(
                self.physical_id, [], [])

    class ScalableTarget(_Adapted, CloudFormationModel):
        __module__ = _MODULE  # moto's model registry keys models by its 2nd part

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::ApplicationAutoScaling::ScalableTarget"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name, **kwargs):
            props = cloudformation_json["Properties"]
            target = applicationautoscaling_backends[account_id][region_name]
            target.register_scalable_target(
                namespace=props["ServiceNamespace"], r_id=props["ResourceId"],
                dimension=props["ScalableDimension"],
                min_capacity=int(props["MinCapacity"]), max_capacity=int(props["MaxCapacity"]),
                role_arn=props.get("RoleARN"), suspended_state=props.get("SuspendedState"),
            )
            adapted = cls()
            adapted.physical_id = cfn_types.scalable_target_ref(
                props["ResourceId"], props["ScalableDimension"], props["ServiceNamespace"])
            return adapted

        def remove(self, account_id, region_name):
            resource_id, dimension, namespace = self.physical_id.split("|")
            applicationautoscaling_backends[account_id][region_name].deregister_scalable_target(
                namespace, resource_id, dimension)

    class ScalingPolicy(_Adapted, CloudFormationModel):
        __module__ = _MODULE  # moto's model registry keys models by its 2nd part

        key: tuple[str, str, str, str] = ("", "", "", "")

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::ApplicationAutoScaling::ScalingPolicy"

        @classmethod
        def attributes(cls):
            return {"Arn": "physical_id"}

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json,
                                            account_id, region_name, **kwargs):
            props = cloudformation_json["Properties"]
            if props.get("ScalingTargetId"):
                resource_id, dimension, namespace = props["ScalingTargetId"].split("|")
            else:
                resource_id = props["ResourceId"]
                dimension = props["ScalableDimension"]
                namespace = props["ServiceNamespace"]
            policy_type = props["PolicyType"]
            body = (props.get("TargetTrackingScalingPolicyConfiguration")
                    if policy_type == "TargetTrackingScaling"
                    else props.get("StepScalingPolicyConfiguration"))
            name = props.get("PolicyName", resource_name)
            policy = applicationautoscaling_backends[account_id][region_name].put_scaling_policy(
                policy_name=name, service_namespace=namespace, resource_id=resource_id,
                scalable_dimension=dimension, policy_body=body, policy_type=policy_type,
            )
            adapted = cls()
            adapted.physical_id = policy.policy_arn
            adapted.key = (name, namespace, resource_id, dimension)
            return adapted

        def remove(self, account_id, region_name):
            name, namespace, resource_id, dimension = self.key
            applicationautoscaling_backends[account_id][region_name].delete_scaling_policy(
                name, namespace, resource_id, dimension)

    registered = (Secret, Certificate, CapacityProvider, ClusterCapacityProviderAssociations,
                  ScalableTarget, ScalingPolicy) + moto_autoscaling.models()
    assert tuple(c.cloudformation_type() for c in registered) == ADAPTED_TYPES
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    missing = set(ADAPTED_TYPES) - set(parsing.get_model_map())
    assert not missing, f"adapter types not registered: {missing}"

    # 10. Fn::Cidr. clean_json recurses through the module global, so wrapping it is enough.
    original_clean_json = parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, dict) and "Fn::Cidr" in resource_json:
            block, count, host_bits = (original_clean_json(v, resources_map)
                                       for v in resource_json["Fn::Cidr"])
            network = ipaddress.ip_network(block, strict=False)
            prefix = network.max_prefixlen - int(host_bits)
            return [str(net) for net in itertools.islice(network.subnets(new_prefix=prefix),
                                                         int(count))]
        return original_clean_json(resource_json, resources_map)

    parsing.clean_json = clean_json

    # 11. SSM-typed parameters with a missing key.
    original_parse_ssm = parsing.ResourceMap.parse_ssm_parameter

    def parse_ssm_parameter(self, value: str, value_type: str) -> Any:
        from moto.ssm.models import ssm_backends

        if ssm_backends[self._account_id][self._region_name].get_parameter(value) is None:
            hint = ("" if str(value).startswith("/") else
                    " (a parent stack that passes Ref of an SSM-typed parameter passes the "
                    "resolved value, not the key: declare the child's parameter with the "
                    "value's own type, e.g. AWS::EC2::Image::Id)")
            raise ValidationError(message=f"Unable to fetch parameters [{value}] from "
                                          f"parameter store for this account{hint}")
        return original_parse_ssm(self, value, value_type)

    parsing.ResourceMap.parse_ssm_parameter = parse_ssm_parameter

    # 12. ELBv2 attributes, derived from the ARNs exactly as AWS derives them.
    from moto.elbv2.models import FakeLoadBalancer, FakeTargetGroup

    original_lb_attribute = FakeLoadBalancer.get_cfn_attribute

    def load_balancer_attribute(self, attribute_name: str) -> Any:
        if attribute_name == "LoadBalancerFullName":
            return cfn_types.load_balancer_full_name(self.arn)  # app/<name>/<id>
        if attribute_name == "CanonicalHostedZoneID":
            return self.canonical_hosted_zone_id
        if attribute_name == "SecurityGroups":
            return list(self.security_groups)
        return original_lb_attribute(self, attribute_name)

    def target_group_attribute(self, attribute_name: str) -> Any:
        values = {
            "TargetGroupArn": lambda: self.arn,
            "TargetGroupFullName": lambda: cfn_types.target_group_full_name(self.arn),
            "TargetGroupName": lambda: self.name,
            "LoadBalancerArns": lambda: list(self.load_balancer_arns),
        }
        if attribute_name not in values:
            raise parsing.UnformattedGetAttTemplateException()
        return values[attribute_name]()

    FakeLoadBalancer.get_cfn_attribute = load_balancer_attribute
    FakeTargetGroup.get_cfn_attribute = target_group_attribute

    # 13. Bucket policies: conditional statements are not evaluated.
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(self.policy.decode())
        statements = document.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else statements
        document["Statement"] = [s for s in statements if "Condition" not in s]
        if not document["Statement"]:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps(document)).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission

    # 14. List parameters in DescribeStacks, comma-joined.
    def parameter_list(self) -> list[dict[str, Any]]:
        hidden = self.resource_map.no_echo_parameter_keys
        return [{"ParameterKey": key,
                 "ParameterValue": "****" if key in hidden else
                 ",".join(map(str, value)) if isinstance(value, list) else value}
                for key, value in self.resource_map.resolved_parameters.items()]

    cfn_models.Stack.parameter_list = property(parameter_list)

    # 15. UpdateTerminationProtection.
    def update_termination_protection(self):
        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        stack.enable_termination_protection = self._get_param(
            "EnableTerminationProtection") in (True, "true")
        return ActionResult({"StackId": stack.stack_id})

    CloudFormationResponse.update_termination_protection = update_termination_protection

    # 16. LoadBalancerAttributes at create.
    from moto.elbv2.models import ELBv2Backend, elbv2_backends

    original_create_lb = FakeLoadBalancer.create_from_cloudformation_json.__func__

    def create_load_balancer(cls, resource_name, cloudformation_json, account_id, region_name,
                             **kwargs):
        balancer = original_create_lb(cls, resource_name, cloudformation_json, account_id,
                                      region_name, **kwargs)
        attributes = {a["Key"]: str(a["Value"]).lower() if isinstance(a["Value"], bool)
                      else str(a["Value"])
                      for a in cloudformation_json["Properties"].get("LoadBalancerAttributes", [])
                      if isinstance(a, dict) and "Key" in a}
        known = {k: v for k, v in attributes.items() if k in FakeLoadBalancer.VALID_ATTRS}
        if known:
            elbv2_backends[account_id][region_name].modify_load_balancer_attributes(
                balancer.arn, known)
        return balancer

    FakeLoadBalancer.create_from_cloudformation_json = classmethod(create_load_balancer)

    # 17. DeleteLoadBalancer refuses while deletion protection is on.
    from moto.elbv2.exceptions import ELBClientError

    class OperationNotPermitted(ELBClientError):
        code = "OperationNotPermitted"

    original_delete_lb = ELBv2Backend.delete_load_balancer

    def delete_load_balancer(self, arn: str) -> None:
        balancer = self.load_balancers.get(arn)
        if balancer is not None and str(balancer.attrs.get(
                "deletion_protection.enabled", "false")).lower() == "true":
            raise OperationNotPermitted(f"Load balancer '{arn}' cannot be deleted because "
                                        "deletion protection is enabled")
        original_delete_lb(self, arn)

    ELBv2Backend.delete_load_balancer = delete_load_balancer

    # 18. A refused delete leaves the stack DELETE_FAILED with events that name the resource.
    from moto.cloudformation.models import CloudFormationBackend, Event
    from moto.core.responses import EmptyResult

    class DeleteRefused(Exception):
        def __init__(self, logical_id: str, resource_type: str, reason: str):
            super().__init__(reason)
            self.logical_id, self.resource_type, self.reason = logical_id, resource_type, reason
            self.recorded = False

    original_delete_resource = parsing.ResourceMap._delete_resource

    def delete_resource(self, parsed_resource, resource_json):
        try:
            original_delete_resource(self, parsed_resource, resource_json)
        except OperationNotPermitted as error:  # only the refusal above: moto orders a delete
            # by retrying resources that raise, so every other error must pass through
            raise DeleteRefused(parsed_resource.logical_resource_id, resource_json["Type"],
                                f"Resource handler returned message: \"{error.message}\" "
                                f"(Service: ElasticLoadBalancingV2, Status Code: 400, "
                                f"HandlerErrorCode: {error.code})") from error

    parsing.ResourceMap._delete_resource = delete_resource

    original_delete_stack = CloudFormationBackend.delete_stack

    def delete_stack(self, name_or_stack_id: str) -> None:
        stack = self.stacks.get(name_or_stack_id) or next(
            (s for s in self.stacks.values() if s.name == name_or_stack_id), None)
        try:
            original_delete_stack(self, name_or_stack_id)
        except DeleteRefused as refused:
            if stack is None:
                raise
            self.stacks[stack.stack_id] = stack  # moto dropped it before deleting
            stack.status = "DELETE_FAILED"
            if stack.events and stack.events[-1].resource_status == "DELETE_FAILED":
                raise  # moto's delete loop retried the same refused delete: said already
            if not refused.recorded:
                refused.recorded = True
                stack.events.append(Event(
                    stack_id=stack.stack_id, stack_name=stack.name,
                    logical_resource_id=refused.logical_id, physical_resource_id="",
                    resource_type=refused.resource_type, resource_status="DELETE_FAILED",
                    resource_status_reason=refused.reason, resource_properties=None))
                stack._add_stack_event("DELETE_FAILED", resource_status_reason=(
                    f"The following resource(s) failed to delete: [{refused.logical_id}]."))
            else:
                stack._add_stack_event("DELETE_FAILED", resource_status_reason=(
                    "Embedded stack was not successfully deleted: " + refused.reason))
            raise

    CloudFormationBackend.delete_stack = delete_stack

    def delete_stack_response(self):
        # AWS answers DeleteStack at once; the failure shows as DELETE_FAILED.
        with contextlib.suppress(DeleteRefused):
            self.cloudformation_backend.delete_stack(self._get_param("StackName"))
        return EmptyResult()

    CloudFormationResponse.delete_stack = delete_stack_response


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


def stock_model_types() -> set[str]:
    """Resource types stock moto's CloudFormation creates (call before apply(), or elsewhere)."""
    from moto.cloudformation import parsing

    return set(parsing.get_model_map()) | set(parsing.NULL_MODELS)


def serve() -> None:
    """Apply the patches, serve moto on 127.0.0.1 at a free port; stop on SIGTERM/SIGINT."""
    apply()
    apply_service_quotas()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    print(f"PORT={server.get_host_and_port()[1]}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop()


# ---------------------------------------------------------------------------------------------
# Service Quotas beyond `vpc` (preflight rehearsal)
# ---------------------------------------------------------------------------------------------

# moto 5.2.5's Service Quotas backend knows only the `vpc` defaults
# (moto/servicequotas/models.py); preflight also reads ec2 quotas (the G and VT vCPU quota, the
# Elastic IP quota). The rehearsal serves those with values the test sets through an action
# that only this adapter has: POST X-Amz-Target ServiceQuotasV20190624.<SET_QUOTA_ACTION> with
# {"ServiceCode", "QuotaCode", "QuotaName", "Value"} (tests/rehearsal/harness.py,
# set_service_quota). A quota nobody set answers as stock moto does.
SET_QUOTA_ACTION = "SetRehearsalServiceQuota"


def apply_service_quotas() -> None:
    """GetServiceQuota answers the quotas the test set (any service code), else as stock moto."""
    from moto.servicequotas.models import ServiceQuotasBackend
    from moto.servicequotas.responses import ServiceQuotasResponse

    served: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    original = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self, service_code: str, quota_code: str) -> dict[str, Any]:
        key = (self.account_id, self.region_name, service_code, quota_code)
        return served[key] if key in served else original(self, service_code, quota_code)

    def set_rehearsal_service_quota(self) -> str:
        params = json.loads(self.body)
        service, code = str(params["ServiceCode"]), str(params["QuotaCode"])
        quota = {"ServiceCode": service, "QuotaCode": code,
                 "QuotaName": str(params.get("QuotaName", code)),
                 "QuotaArn": f"arn:aws:servicequotas:{self.region}:{self.current_account}:"
                             f"{service}/{code}",
                 "Value": float(params["Value"]), "Unit": "None", "Adjustable": True,
                 "GlobalQuota": False}
        served[(self.current_account, self.region, service, code)] = quota
        return json.dumps({"Quota": quota})

    ServiceQuotasBackend.get_service_quota = get_service_quota
    ServiceQuotasResponse.set_rehearsal_service_quota = set_rehearsal_service_quota


if __name__ == "__main__":
    sys.exit(serve())
