"""roll: an instance refresh that keeps serving, against stubbed responses (moto has no
instance refresh)."""

from __future__ import annotations

import pytest

from tests.tools.deploy.stubs import ACCOUNT, NOW, REGION, ROOT, aws_with, resource, stack, target
from tools.deploy import roll
from tools.deploy.target import DeployError

SERVICE_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/llm-api-dev/llm-api-dev-gateway"
GROUP = "llm-api-dev-gpu-asg"
REFRESH = "08b91cf7-8fa6-48af-b6a6-d227f40f1b9b"
TREE = {
    ROOT: [resource("Cluster", "AWS::CloudFormation::Stack", "cluster-stack"),
           resource("Service", "AWS::CloudFormation::Stack", "service-stack")],
    "cluster-stack": [resource("AutoScalingGroup", "AWS::AutoScaling::AutoScalingGroup", GROUP),
                      resource("CapacityProvider", "AWS::ECS::CapacityProvider", "llm-api-dev-gpu"),
                      resource("Cluster", "AWS::ECS::Cluster", "llm-api-dev")],
    "service-stack": [resource("GatewayService", "AWS::ECS::Service", SERVICE_ARN),
                      resource("TaskDefinition", "AWS::ECS::TaskDefinition", "arn:td:7")],
}


def expect_tree(cfn) -> None:
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    for name, resources in TREE.items():
        cfn.add_response("list_stack_resources", {"StackResourceSummaries": resources},
                         {"StackName": name})


def service(deployments: int = 1, rollout: str = "COMPLETED", running: int = 1) -> dict:
    return {"services": [{
        "serviceName": "llm-api-dev-gateway", "runningCount": running, "desiredCount": 1,
        "events": [], "deployments": [
            {"id": f"d{n}", "status": "PRIMARY" if n == 0 else "ACTIVE", "rolloutState": rollout,
             "runningCount": running, "desiredCount": 1, "pendingCount": 0}
            for n in range(deployments)]}]}


def expect_service(ecs, response: dict) -> None:
    ecs.add_response("describe_services", response,
                     {"cluster": "llm-api-dev", "services": ["llm-api-dev-gateway"]})


def expect_draining(ecs, state: str = "ENABLED") -> None:
    ecs.add_response("describe_capacity_providers", {"capacityProviders": [{
        "name": "llm-api-dev-gpu", "autoScalingGroupProvider": {
            "autoScalingGroupArn": "arn:asg", "managedTerminationProtection": "ENABLED",
            "managedDraining": state}}]}, {"capacityProviders": ["llm-api-dev-gpu"]})


def group(versions: list[str], current: str = "4") -> dict:
    return {"AutoScalingGroups": [{
        "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 2, "DesiredCapacity":
        len(versions), "DefaultCooldown": 300, "AvailabilityZones": ["a"],
        "HealthCheckType": "EC2", "CreatedTime": NOW,
        "LaunchTemplate": {"LaunchTemplateId": "lt-1", "Version": current},
        "Instances": [{"InstanceId": f"i-{n}", "AvailabilityZone": "a", "LifecycleState":
                       "InService", "HealthStatus": "Healthy", "ProtectedFromScaleIn": True,
                       "LaunchTemplate": {"LaunchTemplateId": "lt-1", "Version": version}}
                      for n, version in enumerate(versions)]}]}


def refresh(status: str, percent: int, reason: str = "") -> dict:
    body = {"InstanceRefreshId": REFRESH, "AutoScalingGroupName": GROUP, "Status": status,
            "PercentageComplete": percent, "InstancesToUpdate": 1 if percent < 100 else 0}
    return {"InstanceRefreshes": [body | ({"StatusReason": reason} if reason else {})]}


def test_roll_refreshes_outdated_instances_keeping_a_spare_and_prints_progress(stubs, capsys):
    cfn, ecs, autoscaling = (stubs(n)[1] for n in ("cloudformation", "ecs", "autoscaling"))
    expect_tree(cfn)
    expect_service(ecs, service())
    expect_draining(ecs)
    autoscaling.add_response("describe_auto_scaling_groups", group(["3", "4"]),
                             {"AutoScalingGroupNames": [GROUP]})
    autoscaling.add_response("describe_instance_refreshes", {"InstanceRefreshes": []},
                             {"AutoScalingGroupName": GROUP, "MaxRecords": 1})
    autoscaling.add_response("start_instance_refresh", {"InstanceRefreshId": REFRESH}, {
        "AutoScalingGroupName": GROUP, "Strategy": "Rolling", "Preferences": {
            "SkipMatching": True, "MinHealthyPercentage": 100, "MaxHealthyPercentage": 110,
            "ScaleInProtectedInstances": "Refresh", "StandbyInstances": "Ignore"}})
    for status, percent, reason in (
            ("InProgress", 0, "Waiting for instances to warm up before continuing."),
            ("InProgress", 50, "Waiting for instances to warm up before continuing."),
            ("Successful", 100, "")):
        autoscaling.add_response("describe_instance_refreshes", refresh(status, percent, reason),
                                 {"AutoScalingGroupName": GROUP, "InstanceRefreshIds": [REFRESH]})
        expect_service(ecs, service())
    assert roll.roll(aws_with(stubs, "cloudformation", "ecs", "autoscaling"), target(),
                     sleep=lambda s: None) == 0
    out = capsys.readouterr().out
    assert "2 instance(s); 1 not on launch template version 4" in out
    assert f"instance refresh {REFRESH} started" in out
    assert ("refresh InProgress: 0% complete, 1 instance(s) to replace; Waiting for instances "
            "to warm up") in out
    assert "refresh InProgress: 50% complete" in out and "refresh Successful: 100% complete" in out


@pytest.mark.parametrize("state", [service(deployments=2, rollout="IN_PROGRESS"),
                                   service(running=0)])
def test_roll_refuses_while_the_service_is_not_stable(stubs, state):
    cfn, ecs = stubs("cloudformation")[1], stubs("ecs")[1]
    expect_tree(cfn)
    expect_service(ecs, state)
    with pytest.raises(DeployError, match="is not stable") as error:
        roll.roll(aws_with(stubs, "cloudformation", "ecs", "autoscaling"), target())
    assert "make roll again" in error.value.hint


def test_roll_refuses_without_managed_draining(stubs):
    cfn, ecs = stubs("cloudformation")[1], stubs("ecs")[1]
    expect_tree(cfn)
    expect_service(ecs, service())
    expect_draining(ecs, "DISABLED")
    with pytest.raises(DeployError, match="managed draining DISABLED"):
        roll.roll(aws_with(stubs, "cloudformation", "ecs", "autoscaling"), target())


def test_roll_with_every_instance_current_starts_nothing(stubs, capsys):
    cfn, ecs, autoscaling = (stubs(n)[1] for n in ("cloudformation", "ecs", "autoscaling"))
    expect_tree(cfn)
    expect_service(ecs, service())
    expect_draining(ecs)
    autoscaling.add_response("describe_auto_scaling_groups", group(["4"]),
                             {"AutoScalingGroupNames": [GROUP]})
    assert roll.roll(aws_with(stubs, "cloudformation", "ecs", "autoscaling"), target()) == 0
    assert "nothing to replace" in capsys.readouterr().out


def test_a_failed_refresh_fails_the_roll_with_its_reason(stubs):
    cfn, ecs, autoscaling = (stubs(n)[1] for n in ("cloudformation", "ecs", "autoscaling"))
    expect_tree(cfn)
    expect_service(ecs, service())
    expect_draining(ecs)
    autoscaling.add_response("describe_auto_scaling_groups", group(["3"]),
                             {"AutoScalingGroupNames": [GROUP]})
    autoscaling.add_response("describe_instance_refreshes", refresh("InProgress", 0),
                             {"AutoScalingGroupName": GROUP, "MaxRecords": 1})
    autoscaling.add_response("describe_instance_refreshes", refresh(
        "Failed", 0, "You have requested more vCPU capacity than your current vCPU limit"),
        {"AutoScalingGroupName": GROUP, "InstanceRefreshIds": [REFRESH]})
    expect_service(ecs, service())
    with pytest.raises(DeployError, match="instance refresh Failed: You have requested more vCPU"):
        roll.roll(aws_with(stubs, "cloudformation", "ecs", "autoscaling"), target(),
                  sleep=lambda s: None)


# ---------------------------------------------------------------------------------------------
# A mixed instances group (SpotInstances=true): its launch template is the policy's
# ---------------------------------------------------------------------------------------------

TYPES = ("g5.xlarge", "g5.2xlarge")  # InstanceType and its Spot alternative (stacks/gpu.py)


def mixed_group(instances: list[tuple[str, str, str]], current: str = "4",
                override_template: dict | None = None) -> dict:
    """DescribeAutoScalingGroups for a group with a MixedInstancesPolicy and no top-level
    LaunchTemplate; instances are (instance type, launch template id, version)."""
    body = group([])["AutoScalingGroups"][0]
    del body["LaunchTemplate"]
    overrides = [{"InstanceType": kind} for kind in TYPES]
    if override_template:
        overrides[1]["LaunchTemplateSpecification"] = override_template
    body["MixedInstancesPolicy"] = {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateId": "lt-1", "Version": current},
            "Overrides": overrides},
        "InstancesDistribution": {"OnDemandBaseCapacity": 0,
                                  "OnDemandPercentageAboveBaseCapacity": 0,
                                  "SpotAllocationStrategy": "capacity-optimized"}}
    body["DesiredCapacity"] = len(instances)
    body["Instances"] = [{"InstanceId": f"i-{n}", "InstanceType": kind, "AvailabilityZone": "a",
                          "LifecycleState": "InService", "HealthStatus": "Healthy",
                          "ProtectedFromScaleIn": True,
                          "LaunchTemplate": {"LaunchTemplateId": template, "Version": version}}
                         for n, (kind, template, version) in enumerate(instances)]
    return {"AutoScalingGroups": [body]}


@pytest.mark.parametrize("case, described, outdated", [
    ("every instance on the policy's template", mixed_group(
        [("g5.xlarge", "lt-1", "4"), ("g5.2xlarge", "lt-1", "4")]), []),
    ("one on an older version", mixed_group(
        [("g5.xlarge", "lt-1", "3"), ("g5.2xlarge", "lt-1", "4")]), ["i-0"]),
    ("one from a replaced launch template", mixed_group(
        [("g5.xlarge", "lt-0", "4"), ("g5.2xlarge", "lt-1", "4")]), ["i-0"]),
    ("an override with its own launch template", mixed_group(
        [("g5.xlarge", "lt-1", "4"), ("g5.2xlarge", "lt-2", "7"), ("g5.2xlarge", "lt-1", "4")],
        override_template={"LaunchTemplateId": "lt-2", "Version": "7"}), ["i-2"]),
])
def test_a_mixed_instances_groups_template_is_its_policys(case, described, outdated):
    assert roll.outdated_instances(described["AutoScalingGroups"][0]) == outdated, case


def test_roll_of_a_current_mixed_instances_group_starts_nothing(stubs, capsys):
    cfn, ecs, autoscaling = (stubs(n)[1] for n in ("cloudformation", "ecs", "autoscaling"))
    expect_tree(cfn)
    expect_service(ecs, service())
    expect_draining(ecs)
    autoscaling.add_response("describe_auto_scaling_groups", mixed_group(
        [("g5.xlarge", "lt-1", "4"), ("g5.2xlarge", "lt-1", "4")]),
        {"AutoScalingGroupNames": [GROUP]})  # no refresh call is stubbed: one would fail
    assert roll.roll(aws_with(stubs, "cloudformation", "ecs", "autoscaling"), target()) == 0
    out = capsys.readouterr().out
    assert "2 instance(s); 0 not on launch template version 4" in out
    assert "nothing to replace" in out


def test_roll_of_a_mixed_instances_group_sends_no_desired_configuration(stubs, capsys):
    """SkipMatching compares with the group's saved configuration, the mixed instances policy;
    a DesiredConfiguration would become the group's settings (a LaunchTemplate there drops the
    Spot policy). The Stubber's expected parameters are exact: any extra key fails."""
    cfn, ecs, autoscaling = (stubs(n)[1] for n in ("cloudformation", "ecs", "autoscaling"))
    expect_tree(cfn)
    expect_service(ecs, service())
    expect_draining(ecs)
    autoscaling.add_response("describe_auto_scaling_groups", mixed_group(
        [("g5.xlarge", "lt-1", "3"), ("g5.2xlarge", "lt-1", "4")]),
        {"AutoScalingGroupNames": [GROUP]})
    autoscaling.add_response("describe_instance_refreshes", {"InstanceRefreshes": []},
                             {"AutoScalingGroupName": GROUP, "MaxRecords": 1})
    autoscaling.add_response("start_instance_refresh", {"InstanceRefreshId": REFRESH}, {
        "AutoScalingGroupName": GROUP, "Strategy": "Rolling", "Preferences": roll.PREFERENCES})
    autoscaling.add_response("describe_instance_refreshes", refresh("Successful", 100),
                             {"AutoScalingGroupName": GROUP, "InstanceRefreshIds": [REFRESH]})
    expect_service(ecs, service())
    assert roll.roll(aws_with(stubs, "cloudformation", "ecs", "autoscaling"), target(),
                     sleep=lambda s: None) == 0
    out = capsys.readouterr().out
    assert "1 not on launch template version 4" in out
    assert "every instance now runs launch template version 4" in out


def test_a_group_without_a_launch_template_version_is_refused_naming_it(stubs):
    body = mixed_group([("g5.xlarge", "lt-1", "4")])["AutoScalingGroups"][0]
    del body["MixedInstancesPolicy"]
    with pytest.raises(DeployError, match=f"group {GROUP} has no launch template version"):
        roll.outdated_instances(body)
