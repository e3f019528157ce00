"""teardown: the order of the steps, the plan, each step against stubbed responses."""

from __future__ import annotations

import json

import pytest

from tests.tools.deploy.stubs import (
    ACCOUNT,
    NOW,
    REGION,
    REGISTRY_OUTPUTS,
    ROOT,
    aws_with,
    event,
    expect_poll,
    resource,
    stack,
    target,
)
from tools.deploy import teardown
from tools.deploy.target import DeployError

ALB = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/llm-api-prod/50dc6c495c0c9188"


def test_teardown_refuses_a_protected_stack(stubs):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(EnableTerminationProtection=True)]},
                     {"StackName": ROOT})
    with pytest.raises(DeployError, match="termination protection") as error:
        teardown.teardown(aws_with(stubs, "cloudformation"), target(), assume_yes=True)
    assert "update-termination-protection --no-enable-termination-protection" in error.value.hint

def test_teardown_asks_for_the_stack_name(stubs):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    with pytest.raises(DeployError, match="not confirmed"):
        teardown.teardown(aws_with(stubs, "cloudformation"), target(), assume_yes=False,
                        ask=lambda prompt: "yes")

def test_teardown_scales_to_zero_then_unprotects_then_deletes_and_lists_what_it_kept(
        stubs, monkeypatch, capsys):
    order = []
    plan = teardown.TeardownPlan(services=[("c", "s")], groups=["asg"], load_balancers=[ALB], kept=[
        teardown.Kept("log group (Service/GatewayLogGroup)", "lg", "aws logs delete-log-group "
                    "--log-group-name lg")])
    monkeypatch.setattr(teardown, "plan_teardown", lambda aws, t: order.append("plan") or plan)
    monkeypatch.setattr(teardown, "scale_services_to_zero",
                        lambda aws, services, timeout: order.append(("scale", services)))
    monkeypatch.setattr(teardown, "release_instances",
                        lambda aws, groups: order.append(("release", groups)))
    monkeypatch.setattr(teardown, "release_load_balancers",
                        lambda aws, arns: order.append(("unprotect", arns)))
    monkeypatch.setattr(teardown, "delete_root", lambda aws, t: order.append("delete"))
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    assert teardown.teardown(aws_with(stubs, "cloudformation"), target(), assume_yes=False,
                           ask=lambda prompt: ROOT) == 0
    assert order == ["plan", ("scale", [("c", "s")]), ("release", ["asg"]), ("unprotect", [ALB]),
                     "delete"]
    out = capsys.readouterr().out
    kept = out.split("kept (retained on purpose", 1)[1]
    for name in ("lg", "llm-api-dev/gateway", "llm-api-dev/ollama", f"{ROOT}-registry",
                 f"llm-api-dev-artifacts-{ACCOUNT}-{REGION}"):
        assert name in kept
    assert "aws ecr delete-repository --repository-name llm-api-dev/ollama --force" in kept

def test_teardown_plan_finds_services_groups_and_retained_resources(stubs):
    cfn = stubs("cloudformation")[1]
    service_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/llm-api-dev/llm-api-dev-gateway"
    tree = {
        ROOT: [resource("Cluster", "AWS::CloudFormation::Stack", "cluster-stack"),
               resource("Service", "AWS::CloudFormation::Stack", "service-stack")],
        "cluster-stack": [resource("AutoScalingGroup", "AWS::AutoScaling::AutoScalingGroup",
                                   "asg-1"),
                          resource("Cluster", "AWS::ECS::Cluster", "llm-api-dev")],
        "service-stack": [resource("GatewayService", "AWS::ECS::Service", service_arn),
                          resource("TaskDefinition", "AWS::ECS::TaskDefinition", "arn:td:7"),
                          resource("GatewayLogGroup", "AWS::Logs::LogGroup", "gw-logs")],
    }
    for name, resources in tree.items():
        cfn.add_response("list_stack_resources", {"StackResourceSummaries": resources},
                         {"StackName": name})
    templates = {
        ROOT: {"Resources": {}},
        "cluster-stack": {"Resources": {"AutoScalingGroup": {}, "Cluster": {}}},
        "service-stack": {"Resources": {"GatewayLogGroup": {"DeletionPolicy": "Retain"},
                                        "TaskDefinition": {"DeletionPolicy": "Delete"}}},
    }
    for name, body in templates.items():
        cfn.add_response("get_template", {"TemplateBody": json.dumps(body)},
                         {"StackName": name, "TemplateStage": "Processed"})
    plan = teardown.plan_teardown(aws_with(stubs, "cloudformation"), target())
    assert plan.services == [("llm-api-dev", "llm-api-dev-gateway")]
    assert plan.groups == ["asg-1"]
    assert [(k.name, k.how_to_delete) for k in plan.kept] == [
        ("gw-logs", "aws logs delete-log-group --log-group-name gw-logs")]

def test_scale_to_zero_pins_autoscaling_then_waits_for_the_tasks(stubs, capsys):
    scaling, ecs = stubs("application-autoscaling")[1], stubs("ecs")[1]
    resource_id = "service/c/s"
    scaling.add_response("describe_scalable_targets", {"ScalableTargets": [{
        "ServiceNamespace": "ecs", "ResourceId": resource_id,
        "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 1, "MaxCapacity": 4,
        "RoleARN": "arn:role", "CreationTime": NOW}]},
        {"ServiceNamespace": "ecs", "ResourceIds": [resource_id]})
    scaling.add_response("register_scalable_target", {}, {
        "ServiceNamespace": "ecs", "ResourceId": resource_id,
        "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 0, "MaxCapacity": 0})
    ecs.add_response("update_service", {}, {"cluster": "c", "service": "s", "desiredCount": 0})
    ecs.add_response("describe_services", {"services": [{"runningCount": 1, "pendingCount": 0}]},
                     {"cluster": "c", "services": ["s"]})
    ecs.add_response("describe_services", {"services": [{"runningCount": 0, "pendingCount": 0}]},
                     {"cluster": "c", "services": ["s"]})
    teardown.scale_services_to_zero(aws_with(stubs, "application-autoscaling", "ecs"),
                                  [("c", "s")], timeout=600, sleep=lambda s: None)
    out = capsys.readouterr().out
    assert "autoscaling range pinned to 0" in out and "no tasks left" in out

def test_release_instances_removes_scale_in_protection(stubs):
    autoscaling = stubs("autoscaling")[1]
    instances = [{"InstanceId": f"i-{n}", "ProtectedFromScaleIn": n < 2, "AvailabilityZone": "a",
                  "LifecycleState": "InService", "HealthStatus": "Healthy"} for n in range(3)]
    autoscaling.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [{
        "AutoScalingGroupName": "asg", "MinSize": 1, "MaxSize": 4, "DesiredCapacity": 3,
        "DefaultCooldown": 300, "AvailabilityZones": ["a"], "HealthCheckType": "EC2",
        "CreatedTime": NOW, "Instances": instances}]}, {"AutoScalingGroupNames": ["asg"]})
    autoscaling.add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": "asg", "NewInstancesProtectedFromScaleIn": False, "MinSize": 0,
        "DesiredCapacity": 0})
    autoscaling.add_response("set_instance_protection", {}, {
        "AutoScalingGroupName": "asg", "InstanceIds": ["i-0", "i-1"],
        "ProtectedFromScaleIn": False})
    teardown.release_instances(aws_with(stubs, "autoscaling"), ["asg"])

def test_delete_root_prints_events_until_the_stack_is_gone(stubs, capsys):
    cfn = stubs("cloudformation")[1]
    expect_poll(cfn, [event(1, "UPDATE_COMPLETE")])  # prime: history, not printed
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    cfn.add_response("delete_stack", {}, {"StackName": stack()["StackId"]})
    expect_poll(cfn, [event(2, "DELETE_IN_PROGRESS", "User Initiated"),
                      event(1, "UPDATE_COMPLETE")])
    cfn.add_response("describe_stacks", {"Stacks": [stack(status="DELETE_IN_PROGRESS")]},
                     {"StackName": stack()["StackId"]})
    expect_poll(cfn, [event(2, "DELETE_IN_PROGRESS")])
    cfn.add_response("describe_stacks", {"Stacks": [stack(status="DELETE_COMPLETE")]},
                     {"StackName": stack()["StackId"]})
    teardown.delete_root(aws_with(stubs, "cloudformation"), target(), sleep=lambda s: None)
    out = capsys.readouterr().out
    assert "DELETE_IN_PROGRESS   User Initiated" in out and "UPDATE_COMPLETE" not in out
    assert f"stack {ROOT} deleted" in out

def test_a_failed_delete_names_the_resource_and_what_to_do(stubs):
    cfn = stubs("cloudformation")[1]
    expect_poll(cfn, [])
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    cfn.add_response("delete_stack", {}, {"StackName": stack()["StackId"]})
    expect_poll(cfn, [event(3, "DELETE_FAILED", "The following resource(s) failed to delete: "
                            "[Cluster]."),
                      event(2, "DELETE_FAILED", "Embedded stack arn:... was not successfully "
                            "deleted", logical="Cluster"),
                      event(1, "DELETE_FAILED", "Resource handler returned message: The "
                            "Capacity provider is in use", logical="CapacityProvider")])
    cfn.add_response("describe_stacks", {"Stacks": [stack(status="DELETE_FAILED")]},
                     {"StackName": stack()["StackId"]})
    with pytest.raises(DeployError, match="CapacityProvider") as error:
        teardown.delete_root(aws_with(stubs, "cloudformation"), target(), sleep=lambda s: None)
    assert "make teardown again" in error.value.hint


def attributes(protected: str) -> dict:
    return {"Attributes": [{"Key": "access_logs.s3.enabled", "Value": "true"},
                           {"Key": "deletion_protection.enabled", "Value": protected}]}


def test_teardown_turns_the_alb_deletion_protection_off_and_says_so(stubs, capsys):
    elbv2 = stubs("elbv2")[1]
    elbv2.add_response("describe_load_balancer_attributes", attributes("true"),
                       {"LoadBalancerArn": ALB})
    elbv2.add_response("modify_load_balancer_attributes", {}, {
        "LoadBalancerArn": ALB,
        "Attributes": [{"Key": "deletion_protection.enabled", "Value": "false"}]})
    teardown.release_load_balancers(aws_with(stubs, "elbv2"), [ALB])
    out = capsys.readouterr().out
    assert "load balancer llm-api-prod: deletion protection was ON; turned it OFF" in out


def test_an_unprotected_alb_is_left_alone(stubs, capsys):
    stubs("elbv2")[1].add_response("describe_load_balancer_attributes", attributes("false"),
                                   {"LoadBalancerArn": ALB})
    teardown.release_load_balancers(aws_with(stubs, "elbv2"), [ALB])  # no modify call
    assert "deletion protection is off" in capsys.readouterr().out


def test_the_plan_lists_the_load_balancers(stubs):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        resource("LoadBalancer", "AWS::CloudFormation::Stack", "lb-stack")]}, {"StackName": ROOT})
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        resource("LoadBalancer", "AWS::ElasticLoadBalancingV2::LoadBalancer", ALB)]},
        {"StackName": "lb-stack"})
    for name in (ROOT, "lb-stack"):
        cfn.add_response("get_template", {"TemplateBody": json.dumps({"Resources": {}})},
                         {"StackName": name, "TemplateStage": "Processed"})
    assert teardown.plan_teardown(aws_with(stubs, "cloudformation"), target()).load_balancers == [
        ALB]
