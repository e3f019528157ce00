"""make roll ENV=<env>: replace the GPU instances that run an older launch template version
(a new AMI, another InstanceType) with an Auto Scaling instance refresh that keeps serving.

A deploy never rolls the fleet by itself (preview and deploy only say when the AMI or the
launch template changed): replacing GPU instances on every routine deploy would cost a model
load per instance. The refresh starts only while the ECS service is stable, launches the
replacement before it terminates anything (a spare GPU), and relies on the capacity provider's
managed draining to move the task off each old instance before it goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tools import stackwatch
from tools.deploy.events import RefreshProgress, ServiceEvents, watch
from tools.deploy.target import Aws, DeployError, Target, aws_call, say
from tools.deploy.verify import find_service, stability_timeout

# StartInstanceRefresh preferences
# (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RefreshPreferences.html):
PREFERENCES = {
    # Instances already on the group's launch template version are left alone.
    "SkipMatching": True,
    # Never fewer healthy instances than desired: with one task per GPU instance, going below
    # 100 % stops serving. MaxHealthyPercentage above 100 lets the refresh launch the
    # replacement first; "a larger range increases the number of instances that can be
    # replaced at the same time" (instance maintenance policies,
    # https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-maintenance-policy.html),
    # so 200 would launch a whole second fleet of GPUs at once. 110 is the console's "launch
    # before terminating" setting: one spare GPU instance at a time for groups of up to 10
    # (https://aws.amazon.com/blogs/compute/introducing-instance-maintenance-policy-for-amazon-ec2-auto-scaling).
    # Preflight's vCPU check (tools/preflight/capacity.py) sizes the quota from this number.
    "MinHealthyPercentage": 100,
    "MaxHealthyPercentage": 110,
    # The capacity provider's managed termination protection keeps every instance that runs a
    # task protected from scale-in; with the default (Wait) the refresh waits an hour for the
    # protection to go and fails. The ECS guide says to choose Replace (API value "Refresh")
    # for scale-in protected instances when using managed termination protection; managed
    # draining then drains the instance's tasks before it terminates ("Safely stop Amazon ECS
    # workloads running on EC2 instances",
    # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/managed-instance-draining.html).
    "ScaleInProtectedInstances": "Refresh",
    # An instance someone put on Standby is being worked on: leave it, do not wait an hour.
    "StandbyInstances": "Ignore",
}
ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")


def group_launch_template(group: dict, instance_type: str | None = None) -> dict:
    """The launch template (LaunchTemplateId, Version) the group launches instance_type from.

    DescribeAutoScalingGroups gives a group either a top-level LaunchTemplate or a
    MixedInstancesPolicy, whose LaunchTemplate.LaunchTemplateSpecification is the group's
    template (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_AutoScalingGroup.html,
    API_MixedInstancesPolicy.html, API_LaunchTemplate.html); SpotInstances=true deploys the
    second (stacks/cluster.py). An override may name its own template for its instance type:
    "If not provided, Amazon EC2 Auto Scaling uses the launch template that's specified in the
    LaunchTemplate definition" (API_LaunchTemplateOverrides.html)."""
    policy = group.get("MixedInstancesPolicy")
    if not policy:
        return group.get("LaunchTemplate") or {}
    template = policy.get("LaunchTemplate", {})
    for override in template.get("Overrides", []):
        if instance_type and override.get("InstanceType") == instance_type:
            return override.get("LaunchTemplateSpecification") or template.get(
                "LaunchTemplateSpecification", {})
    return template.get("LaunchTemplateSpecification", {})


def on_template(instance: dict, wanted: dict) -> bool:
    have = instance.get("LaunchTemplate", {})
    same_template = (not wanted.get("LaunchTemplateId") or not have.get("LaunchTemplateId")
                     or have["LaunchTemplateId"] == wanted["LaunchTemplateId"])
    return same_template and str(have.get("Version", "")) == str(wanted.get("Version", ""))


def outdated_instances(group: dict) -> list[str]:
    """Instances not on the group's launch template and version (what SkipMatching keeps)."""
    if not group_launch_template(group).get("Version"):
        raise DeployError(f"group {group.get('AutoScalingGroupName', '?')} has no launch "
                          "template version (neither LaunchTemplate nor MixedInstancesPolicy."
                          "LaunchTemplate.LaunchTemplateSpecification)", "deploy the current "
                          "templates (stacks/cluster.py gives the group a launch template), "
                          "then roll")
    return [i["InstanceId"] for i in group.get("Instances", [])
            if not on_template(i, group_launch_template(group, i.get("InstanceType")))]


def require_managed_draining(aws: Aws, tree: list[stackwatch.StackNode]) -> None:
    ecs = aws.client("ecs")
    names = [r["PhysicalResourceId"] for _, r in
             stackwatch.resources_of_type(tree, "AWS::ECS::CapacityProvider")
             if r.get("PhysicalResourceId")]
    if not names:
        return
    providers = aws_call(lambda: ecs.describe_capacity_providers(capacityProviders=names),
                         "read the capacity provider")["capacityProviders"]
    for provider in providers:
        group = provider.get("autoScalingGroupProvider", {})
        if group.get("managedDraining") != "ENABLED":
            raise DeployError(f"capacity provider {provider['name']} has managed draining "
                              f"{group.get('managedDraining', 'unset')}: a refresh would stop "
                              "tasks without draining them", "deploy the current templates "
                              "(stacks/cluster.py turns managed draining on), then roll")


def require_stable(aws: Aws, cluster: str, name: str) -> ServiceEvents:
    service = ServiceEvents(aws, cluster, name)
    service.poll()
    primary = service.primary
    if (len(service.service.get("deployments", [])) != 1
            or primary.get("rolloutState", "COMPLETED") != "COMPLETED"
            or service.service.get("runningCount") != service.service.get("desiredCount")):
        raise DeployError(f"service {name} is not stable (a deployment is running or tasks are "
                          "missing): a refresh now could take its last healthy task",
                          "let the deployment finish (make deploy ENV=<env> waits for it), "
                          "then run make roll again")
    return service


def roll(aws: Aws, target: Target, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> int:
    cfn, autoscaling = aws.client("cloudformation"), aws.client("autoscaling")
    if aws_call(lambda: stackwatch.describe_stack(cfn, target.root_stack), "describe") is None:
        raise DeployError(f"no stack {target.root_stack}", f"make deploy ENV={target.env} first")
    tree = aws_call(lambda: stackwatch.stack_tree(cfn, target.root_stack),
                    "list the stack's resources")
    ref = find_service(tree)
    if ref is None or not ref.groups:
        raise DeployError(f"{target.root_stack} has no ECS service or Auto Scaling group",
                          f"make deploy ENV={target.env} first")
    service = require_stable(aws, ref.cluster, ref.service)
    require_managed_draining(aws, tree)
    per_instance = stability_timeout(target.params, target)
    for name in ref.groups:
        group = aws_call(lambda n=name: autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[n])["AutoScalingGroups"][0], f"describe {name}")
        outdated = outdated_instances(group)
        version = group_launch_template(group).get("Version", "?")
        say(f"roll {target.env}: group {name} has {len(group.get('Instances', []))} "
            f"instance(s); {len(outdated)} not on launch template version {version}")
        if not outdated:
            say("  nothing to replace: every instance runs the current launch template")
            continue
        running = aws_call(lambda n=name: autoscaling.describe_instance_refreshes(
            AutoScalingGroupName=n, MaxRecords=1)["InstanceRefreshes"],
            "read earlier instance refreshes")
        if running and running[0]["Status"] in ACTIVE:
            refresh_id = running[0]["InstanceRefreshId"]
            say(f"  an instance refresh is already {running[0]['Status']}: following "
                f"{refresh_id}")
        else:
            # No DesiredConfiguration, for a mixed instances group too: with SkipMatching and
            # none given, Auto Scaling replaces only the instances that do not match "the
            # configuration that you last saved on the Auto Scaling group"
            # (https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-instance-refresh-skip-matching.html),
            # i.e. what CloudFormation set: the policy's launch template version and overrides.
            # One given "must specify either a LaunchTemplate or a MixedInstancesPolicy"
            # (API_DesiredConfiguration.html) and becomes the group's settings once the refresh
            # succeeds (API_StartInstanceRefresh.html): a LaunchTemplate there would drop the
            # group's Spot policy, and any DesiredConfiguration is drift from the stack.
            refresh_id = aws_call(lambda n=name: autoscaling.start_instance_refresh(
                AutoScalingGroupName=n, Strategy="Rolling", Preferences=PREFERENCES
            )["InstanceRefreshId"], f"start an instance refresh of {name}")
            say(f"  instance refresh {refresh_id} started: replacement first (max healthy "
                f"{PREFERENCES['MaxHealthyPercentage']} %, min {PREFERENCES['MinHealthyPercentage']}"
                " %), protected instances refreshed, tasks drained by ECS")
        progress = RefreshProgress(aws, name, refresh_id)
        watch([progress, service], progress.done, timeout=per_instance * len(outdated),
              what=f"instance refresh {refresh_id} not finished",
              hint="it goes on by itself: follow it with aws autoscaling "
                   f"describe-instance-refreshes --auto-scaling-group-name {name}, or run "
                   "make roll again", sleep=sleep, clock=clock)
        say(f"  group {name}: every instance now runs launch template version {version}")
    return 0
