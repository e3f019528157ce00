"""make teardown ENV=<env>: after the user confirms, scale the service to zero, drop the GPU
instances' scale-in protection, turn the ALB's deletion protection off, delete the root stack
(events as they arrive), and list what was kept on purpose with the command that deletes it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.contract import TIMEOUTS
from tools import stackwatch
from tools.deploy.events import StackEvents, wait_for_stack
from tools.deploy.images import IMAGES
from tools.deploy.target import POLL_SECONDS, Aws, DeployError, Target, aws_call, say
from tools.deploy.verify import service_ref

LOAD_BALANCER = "AWS::ElasticLoadBalancingV2::LoadBalancer"
DELETION_PROTECTION = "deletion_protection.enabled"


@dataclass
class Kept:
    what: str
    name: str
    how_to_delete: str


@dataclass
class TeardownPlan:
    services: list[tuple[str, str]] = field(default_factory=list)  # (cluster, service)
    groups: list[str] = field(default_factory=list)  # Auto Scaling group names
    load_balancers: list[str] = field(default_factory=list)  # ARNs
    kept: list[Kept] = field(default_factory=list)


DELETE_COMMANDS = {
    "AWS::Logs::LogGroup": ("log group", "aws logs delete-log-group --log-group-name {id}"),
    "AWS::SecretsManager::Secret": ("secret", "aws secretsmanager delete-secret --secret-id "
                                              "{id} --recovery-window-in-days 7"),
    "AWS::KMS::Key": ("KMS key", "aws kms schedule-key-deletion --key-id {id} "
                                 "--pending-window-in-days 30"),
    "AWS::S3::Bucket": ("bucket", "aws s3 rb s3://{id} --force"),
    "AWS::ECR::Repository": ("repository", "aws ecr delete-repository --repository-name {id} "
                                           "--force"),
}


def retained_resources(cfn, tree: list[stackwatch.StackNode]) -> list[Kept]:
    kept = []
    for node in tree:
        template = aws_call(lambda node=node: cfn.get_template(StackName=node.stack_id,
                                                               TemplateStage="Processed"),
                            f"read the template of {node.label}")["TemplateBody"]
        if isinstance(template, str):  # boto3 parses JSON bodies; a string is YAML or odd
            try:
                template = json.loads(template)
            except json.JSONDecodeError:
                say(f"  (template of {node.label} not readable as JSON: its retained "
                    "resources are not listed below)")
                continue
        for resource in node.resources:
            body = template.get("Resources", {}).get(resource["LogicalResourceId"], {})
            if body.get("DeletionPolicy") not in stackwatch.RETAINING_POLICIES:
                continue
            physical = resource.get("PhysicalResourceId")
            if not physical:
                continue
            what, command = DELETE_COMMANDS.get(resource["ResourceType"],
                                                (resource["ResourceType"], ""))
            kept.append(Kept(f"{what} ({node.label}/{resource['LogicalResourceId']})", physical,
                             command.format(id=physical)))
    return kept


def plan_teardown(aws: Aws, target: Target) -> TeardownPlan:
    cfn = aws.client("cloudformation")
    tree = aws_call(lambda: stackwatch.stack_tree(cfn, target.root_stack),
                    "list the stack's resources")
    plan = TeardownPlan()

    def alive(resource: dict) -> bool:  # a repeated teardown skips what is already gone
        return bool(resource.get("PhysicalResourceId")) and resource.get(
            "ResourceStatus") != "DELETE_COMPLETE"

    for label, resource in stackwatch.resources_of_type(tree, "AWS::ECS::Service"):
        if alive(resource):
            ref = service_ref(tree, label, resource)
            plan.services.append((ref.cluster, ref.service))
    plan.groups = [r["PhysicalResourceId"] for _, r in
                   stackwatch.resources_of_type(tree, "AWS::AutoScaling::AutoScalingGroup")
                   if alive(r)]
    plan.load_balancers = [r["PhysicalResourceId"] for _, r in
                           stackwatch.resources_of_type(tree, LOAD_BALANCER) if alive(r)]
    plan.kept = retained_resources(cfn, tree)
    return plan


def scale_services_to_zero(aws: Aws, services: list[tuple[str, str]], timeout: int,
                           sleep: Callable[[float], None] = time.sleep) -> None:
    ecs = aws.client("ecs")
    scaling = aws.client("application-autoscaling")
    for cluster, service in services:
        resource_id = f"service/{cluster}/{service}"
        targets = aws_call(lambda rid=resource_id: scaling.describe_scalable_targets(
            ServiceNamespace="ecs", ResourceIds=[rid]), "read the service's scaling target")
        if targets.get("ScalableTargets"):
            # Autoscaling would put the tasks back: pin its range to zero first.
            aws_call(lambda rid=resource_id: scaling.register_scalable_target(
                ServiceNamespace="ecs", ResourceId=rid,
                ScalableDimension="ecs:service:DesiredCount", MinCapacity=0, MaxCapacity=0),
                "pin the service's scaling range to 0")
            say(f"  {service}: autoscaling range pinned to 0")
        aws_call(lambda c=cluster, s=service: ecs.update_service(cluster=c, service=s,
                                                                 desiredCount=0),
                 f"scale {service} to zero")
        say(f"  {service}: desired count 0; waiting for its tasks to drain")
        waited = 0
        while True:
            described = aws_call(lambda c=cluster, s=service: ecs.describe_services(
                cluster=c, services=[s]), f"describe {service}")
            current = (described.get("services") or [{}])[0]
            running = current.get("runningCount", 0) + current.get("pendingCount", 0)
            if running == 0 or current.get("status") == "INACTIVE":
                say(f"  {service}: no tasks left")
                break
            if waited >= timeout:
                raise DeployError(f"{service} still has {running} task(s) after {timeout} s",
                                  "wait, then run make teardown again (it is safe to repeat)")
            say(f"  {service}: {running} task(s) still draining")
            sleep(POLL_SECONDS)
            waited += POLL_SECONDS


def release_instances(aws: Aws, groups: list[str]) -> None:
    """Managed termination protection keeps instances protected from scale-in; a stack delete
    then waits on them forever (DESIGN.md, 'Facts that bite'): unprotect and scale to zero."""
    autoscaling = aws.client("autoscaling")
    for group in groups:
        described = aws_call(lambda g=group: autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[g]), f"describe {group}")
        if not described.get("AutoScalingGroups"):
            continue
        aws_call(lambda g=group: autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=g, NewInstancesProtectedFromScaleIn=False, MinSize=0,
            DesiredCapacity=0), f"scale {group} to zero")
        protected = [i["InstanceId"] for i in described["AutoScalingGroups"][0].get("Instances", [])
                     if i.get("ProtectedFromScaleIn")]
        for start in range(0, len(protected), 50):
            batch = protected[start:start + 50]
            aws_call(lambda g=group, b=batch: autoscaling.set_instance_protection(
                AutoScalingGroupName=g, InstanceIds=b, ProtectedFromScaleIn=False),
                f"remove scale-in protection in {group}")
        say(f"  {group}: scale-in protection removed from {len(protected)} instance(s); "
            "desired 0")


def release_load_balancers(aws: Aws, arns: list[str]) -> None:
    """ELB refuses DeleteLoadBalancer while deletion protection is on (OperationNotPermitted,
    https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DeleteLoadBalancer.html),
    and so the stack delete fails on it; prod keeps it on so that nothing else deletes the ALB.
    Called only after the user has confirmed the teardown."""
    elbv2 = aws.client("elbv2")
    for arn in arns:
        name = arn.rsplit("/", 2)[-2] if arn.count("/") >= 2 else arn
        attributes = aws_call(lambda a=arn: elbv2.describe_load_balancer_attributes(
            LoadBalancerArn=a)["Attributes"], f"read the attributes of load balancer {name}")
        if not any(a["Key"] == DELETION_PROTECTION and a["Value"] == "true"
                   for a in attributes):
            say(f"  load balancer {name}: deletion protection is off")
            continue
        aws_call(lambda a=arn: elbv2.modify_load_balancer_attributes(
            LoadBalancerArn=a, Attributes=[{"Key": DELETION_PROTECTION, "Value": "false"}]),
            f"turn off deletion protection of load balancer {name}")
        say(f"  load balancer {name}: deletion protection was ON; turned it OFF (you confirmed "
            "this teardown) so that the stack delete can remove it")


def delete_root(aws: Aws, target: Target, sleep: Callable[[float], None] = time.sleep,
                timeout: float = 3600) -> None:
    cfn = aws.client("cloudformation")
    events = StackEvents(aws, target.root_stack)
    events.prime()
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.root_stack), "describe")
    stack_id = stack["StackId"] if stack else target.root_stack
    aws_call(lambda: cfn.delete_stack(StackName=stack_id), f"delete {target.root_stack}")
    say(f"deleting stack {target.root_stack}; events as they arrive:")
    wait_for_stack(aws, events, stack_id, "delete", timeout=timeout, sleep=sleep,
                   fallback_hint="fix or remove the resource named above, then run make "
                                 "teardown again; as a last resort: aws cloudformation "
                                 "delete-stack --retain-resources <LogicalId>")
    say(f"stack {target.root_stack} deleted")


def teardown(aws: Aws, target: Target, assume_yes: bool,
             ask: Callable[[str], str] = input) -> int:
    cfn = aws.client("cloudformation")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.root_stack),
                     f"describe {target.root_stack}")
    kept: list[Kept] = []
    if stack is None:
        say(f"no stack {target.root_stack}: nothing to delete")
    else:
        if stack.get("EnableTerminationProtection"):
            raise DeployError(f"{target.root_stack} has termination protection",
                              "if you really mean to delete this environment: aws "
                              "cloudformation update-termination-protection "
                              "--no-enable-termination-protection --stack-name "
                              f"{target.root_stack}, then run make teardown again")
        if not assume_yes:
            answer = ask(f"delete stack {target.root_stack} in {target.account}/{target.region}?"
                         f" type its name to confirm: ")
            if answer.strip() != target.root_stack:
                raise DeployError("not confirmed; nothing deleted")
        plan = plan_teardown(aws, target)
        say(f"teardown {target.env}: {len(plan.services)} service(s), {len(plan.groups)} "
            f"Auto Scaling group(s), {len(plan.load_balancers)} load balancer(s)")
        drain = TIMEOUTS.deregistration_delay_seconds + TIMEOUTS.container_stop_timeout_seconds
        scale_services_to_zero(aws, plan.services, timeout=drain + 300)
        release_instances(aws, plan.groups)
        release_load_balancers(aws, plan.load_balancers)
        delete_root(aws, target)
        kept = plan.kept
    registry = aws_call(lambda: stackwatch.describe_stack(cfn, target.registry_stack),
                        f"describe {target.registry_stack}")
    if registry is not None:
        outputs = stackwatch.outputs_of(registry)
        for image in IMAGES:
            name = outputs.get(f"{image.capitalize()}RepositoryName")
            if name:
                kept.append(Kept(f"repository ({target.registry_stack})", name,
                                 DELETE_COMMANDS["AWS::ECR::Repository"][1].format(id=name)))
        kept.append(Kept("registry stack (images for redeploys and rollbacks)",
                         target.registry_stack, "aws cloudformation delete-stack --stack-name "
                         f"{target.registry_stack}  (after deleting the repositories)"))
    kept.append(Kept("artifact bucket (packaged templates)", target.artifact_bucket,
                     f"aws s3 rb s3://{target.artifact_bucket} --force"))
    say("")
    say("kept (retained on purpose; delete them for good only when nobody needs them):")
    for item in kept:
        say(f"  {item.what}: {item.name}")
        if item.how_to_delete:
            say(f"      delete: {item.how_to_delete}")
    return 0
