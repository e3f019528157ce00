"""Service autoscaling (stacks/scaling.py): target tracking, schedules, scale-to-zero.

The generated template shows the wiring; the rendering per environment (tools/render.py, the
Conditions resolved) shows what dev (scale-to-zero on) and prod (off) actually deploy. moto does
not run alarms, so these tests are what holds the alarms' metric, dimension, statistic, period,
thresholds and missing-data handling.
"""

from __future__ import annotations

import pytest

from app.contract import IN_FLIGHT_REQUESTS, METRIC_NAMESPACE
from stacks import wake
from tests.cfn import generated, props, resources
from tests.cfn import rendered as rendered_templates
from tools import params


def service_template():
    return generated()["service.json"]


def rendered(env: str, **overrides: str) -> dict:
    return rendered_templates(env, **overrides)["service.json"]["Resources"]


def target_tracking(template_resources: dict) -> dict[str, dict]:
    return {name: props(body)["TargetTrackingScalingPolicyConfiguration"]
            for name, body in template_resources.items()
            if body["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
            and props(body)["PolicyType"] == "TargetTrackingScaling"}


# -- target tracking ---------------------------------------------------------------------------


def test_request_count_policy_label_is_built_from_the_alb_and_target_group_full_names():
    spec = target_tracking(resources(service_template()))["RequestCountScaling"][
        "PredefinedMetricSpecification"]
    assert spec["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    assert spec["ResourceLabel"] == {"Fn::Join": ["/", [{"Ref": "LoadBalancerFullName"},
                                                        {"Ref": "TargetGroupFullName"}]]}
    root = generated()["root.json"]["Resources"]["Service"]["Properties"]["Parameters"]
    assert root["LoadBalancerFullName"]["Fn::GetAtt"] == ["LoadBalancer",
                                                          "Outputs.LoadBalancerFullName"]
    assert root["TargetGroupFullName"]["Fn::GetAtt"] == ["LoadBalancer",
                                                         "Outputs.TargetGroupFullName"]


def test_in_flight_policy_reads_the_gateways_metric():
    spec = target_tracking(resources(service_template()))["InFlightScaling"][
        "CustomizedMetricSpecification"]
    assert spec["Namespace"] == METRIC_NAMESPACE and spec["MetricName"] == IN_FLIGHT_REQUESTS.name
    assert spec["Statistic"] == "Average"
    assert [d["Name"] for d in spec["Dimensions"]] == ["ClusterName", "ServiceName"]
    task = props(service_template()["Resources"]["TaskDefinition"])
    gateway = next(c for c in task["ContainerDefinitions"] if c["Name"] == "gateway")
    env = {e["Name"]: e["Value"] for e in gateway["Environment"]}
    dims = {d["Name"]: d["Value"] for d in spec["Dimensions"]}
    assert dims == {"ClusterName": env["GATEWAY_CLUSTER_NAME"],
                    "ServiceName": env["GATEWAY_SERVICE_NAME"]}


def test_scale_out_fast_scale_in_slow():
    for config in target_tracking(resources(service_template())).values():
        assert config["ScaleOutCooldown"] < config["ScaleInCooldown"]


@pytest.mark.parametrize("env", params.environments())
def test_scale_in_never_waits_for_the_request_count_policy(env):
    # The ALB publishes no request count while nothing flows, target tracking does not act on
    # insufficient data, and scale-in needs every policy with scale-in enabled. With scale-in on
    # here (the old template), an idle service never scaled in.
    policies = target_tracking(rendered(env))
    assert policies["RequestCountScaling"]["DisableScaleIn"] is True
    enabled = [name for name, config in policies.items() if not config.get("DisableScaleIn")]
    scale_to_zero = params.load_env(env)["ScaleToZero"] == "true"
    # With scale-to-zero on, only the idle policy scales in; otherwise the in-flight gauge,
    # which has data at idle (0 every 30 s), does.
    assert enabled == ([] if scale_to_zero else ["InFlightScaling"])


# -- floor and schedules -----------------------------------------------------------------------


@pytest.mark.parametrize("env", params.environments())
def test_floor_is_zero_with_scale_to_zero_and_the_schedule_keeps_it(env):
    values = params.load_env(env)
    target = props(rendered(env)["ScalableTarget"])
    floor = 0 if values["ScaleToZero"] == "true" else int(values["ServiceMinTasks"])
    assert (target["MinCapacity"], target["MaxCapacity"]) == (floor, int(values["ServiceMaxTasks"]))
    actions = {a["ScheduledActionName"]: a["ScalableTargetAction"]
               for a in target.get("ScheduledActions", [])}
    if values["ScheduledScaling"] == "true":
        # Night: maximum 0 caps the wake policy too (a request at night gets the ALB's 503).
        assert actions["scale-to-zero"] == {"MinCapacity": 0, "MaxCapacity": 0}
        assert actions["scale-back-up"] == {"MinCapacity": floor,
                                            "MaxCapacity": int(values["ServiceMaxTasks"])}
    else:
        assert actions == {}


# -- scale to zero: alarms and step policies ---------------------------------------------------
# The alarms' behaviour over traffic is tests/stacks/test_wake_alarms.py; here their shape.


def step_policy(template_resources, name):
    config = props(template_resources[name])["StepScalingPolicyConfiguration"]
    assert props(template_resources[name])["PolicyType"] == "StepScaling"
    return config


def metric_stats(alarm: dict) -> dict[str, dict]:
    return {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}


def test_idle_alarm_reads_what_reached_the_forward_rule_and_always_has_a_datapoint():
    alarm = props(rendered("dev")["IdleAlarm"])
    stats = {k: (v["Metric"]["Namespace"], v["Metric"]["MetricName"], v["Stat"], v["Period"],
                 sorted(d["Name"] for d in v["Metric"]["Dimensions"]))
             for k, v in metric_stats(alarm).items()}
    assert stats == {
        "served": ("AWS/ApplicationELB", "RequestCount", "Sum", 60, ["LoadBalancer", "TargetGroup"]),
        "rejected": ("AWS/ApplicationELB", "HTTPCode_ELB_503_Count", "Sum", 60, ["LoadBalancer"])}
    (expression,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    assert "TIME_SERIES(0)" in expression["Expression"]
    idle = int(params.load_env("dev")["IdleMinutes"])
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (idle, idle)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "LessThanOrEqualToThreshold")


def test_wake_alarm_reads_503s_and_the_running_task_count():
    alarm = props(rendered("dev")["WakeAlarm"])
    stats = {k: (v["Metric"]["Namespace"], v["Metric"]["MetricName"], v["Stat"])
             for k, v in metric_stats(alarm).items()}
    assert stats == {"rejected": ("AWS/ApplicationELB", "HTTPCode_ELB_503_Count", "Sum"),
                     "running": ("ECS/ContainerInsights", "RunningTaskCount", "Maximum")}
    running = metric_stats(alarm)["running"]["Metric"]["Dimensions"]
    task = props(rendered("dev")["TaskDefinition"])
    gateway = next(c for c in task["ContainerDefinitions"] if c["Name"] == "gateway")
    env = {e["Name"]: e["Value"] for e in gateway["Environment"]}
    assert {d["Name"]: d["Value"] for d in running} == {
        "ClusterName": env["GATEWAY_CLUSTER_NAME"], "ServiceName": env["GATEWAY_SERVICE_NAME"]}
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (1, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"


def test_container_insights_is_on_for_the_running_task_count():
    cluster = props(rendered_templates("dev")["cluster.json"]["Resources"]["Cluster"])
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]


@pytest.mark.parametrize(("alarm", "policy", "capacity"), [
    ("IdleAlarm", "IdleScaling", 0), ("WakeAlarm", "WakeScaling", 1)])
def test_each_alarm_sets_an_exact_capacity_on_every_invocation(alarm, policy, capacity):
    template = resources(service_template())
    assert props(template[alarm])["AlarmActions"][0] == {"Ref": policy}
    config = step_policy(template, policy)
    assert config["AdjustmentType"] == "ExactCapacity"
    (step,) = config["StepAdjustments"]  # one step: re-invocations set the same value
    assert step["ScalingAdjustment"] == capacity
    # Short: step scaling does not repeat a scale-out of the same size within its cooldown.
    assert config["Cooldown"] == 60
    assert props(template[policy])["ScalingTargetId"] == {"Ref": "ScalableTarget"}


BREACH_SIDE = {"GreaterThanOrEqualToThreshold": "MetricIntervalLowerBound",
               "GreaterThanThreshold": "MetricIntervalLowerBound",
               "LessThanOrEqualToThreshold": "MetricIntervalUpperBound",
               "LessThanThreshold": "MetricIntervalUpperBound"}


@pytest.mark.parametrize("env", params.environments())
def test_step_adjustments_follow_the_api_rules_and_cover_the_breach(env):
    """StepAdjustment: "The upper and lower bound can't be null in the same step adjustment";
    bounds are relative to the alarm's threshold; the ranges may not overlap or leave a gap
    (https://docs.aws.amazon.com/autoscaling/application/APIReference/API_StepAdjustment.html,
    the same rules for EC2 Auto Scaling). Every step policy of every layer, with its alarm."""
    templates = rendered_templates(env)
    alarms = [props(body) for t in templates.values()
              for body in resources(t, "AWS::CloudWatch::Alarm").values()]
    policies = {(lid, f): body for f, t in templates.items() for lid, body in resources(t).items()
                if body["Type"].endswith("::ScalingPolicy")
                and props(body).get("PolicyType") == "StepScaling"}
    if params.load_env(env)["ScaleToZero"] == "true":
        assert policies, "scale-to-zero without step policies"
    for (lid, file_name), body in policies.items():
        config = props(body).get("StepScalingPolicyConfiguration") or props(body)
        steps = config["StepAdjustments"]
        for step in steps:
            assert "MetricIntervalLowerBound" in step or "MetricIntervalUpperBound" in step, lid
        invoking = [a for a in alarms if any(lid in str(action) or str(action).endswith(lid)
                                             for action in a.get("AlarmActions", []))]
        assert invoking, f"{file_name}:{lid}: no alarm invokes it"
        for alarm in invoking:
            side = BREACH_SIDE[alarm["ComparisonOperator"]]
            assert any(step.get(side) == 0 for step in steps), (lid, side, steps)


def test_scale_to_zero_exists_only_where_it_is_on():
    for env in params.environments():
        on = params.load_env(env)["ScaleToZero"] == "true"
        present = {"IdleAlarm", "WakeAlarm", "IdleScaling", "WakeScaling"} & set(rendered(env))
        assert bool(present) == on and (not on or len(present) == 4), (env, present)
    assert params.load_env("dev")["ScaleToZero"] == "true"
    assert params.load_env("prod")["ScaleToZero"] == "false"


@pytest.mark.parametrize("env", params.environments())
def test_idle_minutes_outlast_a_wake(env):
    # A waking task serves nothing until it is ready; if IdleMinutes ran out first, the idle
    # policy would stop it. Its 503s keep the idle alarm OK only while clients retry.
    values = params.with_defaults(env)
    if values["ScaleToZero"] != "true":
        pytest.skip(f"{env}: scale-to-zero off")
    assert int(values["IdleMinutes"]) * 60 > wake.wake_seconds(values)


def test_the_shortest_idle_minutes_allowed_outlast_the_slowest_wake():
    """No warm pool (a cold launch and pull) at the largest load budget: still within the
    smallest IdleMinutes the parameter allows."""
    from stacks import model_load
    minimum = service_template()["Parameters"]["IdleMinutes"]["MinValue"]
    slowest = params.with_defaults("dev") | {"WarmPoolEnabled": "false",
                                             model_load.MODEL_LOAD_SECONDS: str(max(model_load.LOAD_TIERS))}
    assert minimum * 60 > wake.wake_seconds(slowest)


def test_the_wake_alarm_also_sets_the_gpu_group_to_one_instance():
    dev = rendered_templates("dev")
    policy = props(dev["service.json"]["Resources"]["InstanceWakeScaling"])
    assert (policy["PolicyType"], policy["AdjustmentType"]) == ("StepScaling", "ExactCapacity")
    assert policy["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    assert policy["AutoScalingGroupName"] == dev["cluster.json"]["Outputs"][
        "AutoScalingGroupName"]["Value"]
    # nothing it could cut: new instances are protected from scale-in
    group = props(dev["cluster.json"]["Resources"]["AutoScalingGroup"])
    assert group["NewInstancesProtectedFromScaleIn"] is True
    wake_alarm = props(dev["service.json"]["Resources"]["WakeAlarm"])
    assert props(service_template()["Resources"]["WakeAlarm"])["AlarmActions"] == [
        {"Ref": "WakeScaling"}, {"Ref": "InstanceWakeScaling"}]
    assert len(wake_alarm["AlarmActions"]) == 2
    assert "InstanceWakeScaling" not in rendered("prod")
