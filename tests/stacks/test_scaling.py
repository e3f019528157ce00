"""Service autoscaling (stacks/scaling.py): target tracking, schedules, scale-to-zero.

The generated template shows the wiring; the rendering per environment (tools/render.py, the
Conditions resolved) shows what dev (scale-to-zero on) and prod (off) actually deploy. moto does
not run alarms, so these tests are what holds the alarms' metric, dimension, statistic, period,
thresholds and missing-data handling.
"""

from __future__ import annotations

from functools import cache

import pytest

from app.contract import IN_FLIGHT_REQUESTS, METRIC_NAMESPACE
from stacks import wake
from tests.cfn import generated, props, resources
from tools import params, render


def service_template():
    return generated()["service.json"]


@cache
def rendered(env: str, **overrides: str) -> dict:
    values = params.load_env(env) | overrides
    return render.render_environment(env, values=values).templates["service.json"]["Resources"]


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


def step_policy(template_resources, name):
    config = props(template_resources[name])["StepScalingPolicyConfiguration"]
    assert props(template_resources[name])["PolicyType"] == "StepScaling"
    return config


def metric_stats(alarm: dict) -> dict[str, dict]:
    return {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}


def test_idle_alarm_counts_every_request_for_idle_minutes_and_missing_data_is_idle():
    dev = rendered("dev")
    alarm = props(dev["IdleAlarm"])
    stats = metric_stats(alarm)
    assert {k: (v["Metric"]["Namespace"], v["Metric"]["MetricName"], v["Stat"], v["Period"])
            for k, v in stats.items()} == {
        "requests": ("AWS/ApplicationELB", "RequestCount", "Sum", 60),
        "rejected": ("AWS/ApplicationELB", "HTTPCode_ELB_503_Count", "Sum", 60)}
    (expression,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    assert expression["Expression"] == "FILL(requests, 0) + FILL(rejected, 0)"
    idle = int(params.load_env("dev")["IdleMinutes"])
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (idle, idle)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "LessThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "breaching"


def test_wake_alarm_fires_on_the_first_503_and_silence_is_not_a_wake():
    alarm = props(rendered("dev")["WakeAlarm"])
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == (
        "AWS/ApplicationELB", "HTTPCode_ELB_503_Count", "Sum", 60)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (1, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(("alarm", "policy", "capacity"), [
    ("IdleAlarm", "IdleScaling", 0), ("WakeAlarm", "WakeScaling", 1)])
def test_each_alarm_sets_an_exact_capacity_on_every_invocation(alarm, policy, capacity):
    template = resources(service_template())
    assert props(template[alarm])["AlarmActions"] == [{"Ref": policy}]
    config = step_policy(template, policy)
    assert config["AdjustmentType"] == "ExactCapacity"
    # One step over the whole range: re-invocations (every minute in ALARM) set the same value.
    assert config["StepAdjustments"] == [{"ScalingAdjustment": capacity}]
    # Short: step scaling does not repeat a scale-out of the same size within its cooldown.
    assert config["Cooldown"] == 60
    assert props(template[policy])["ScalingTargetId"] == {"Ref": "ScalableTarget"}


@pytest.mark.parametrize("name", ["IdleAlarm", "WakeAlarm"])
def test_alarms_watch_this_load_balancer(name):
    alarm = props(service_template()["Resources"][name])
    dimensions = ([d for m in metric_stats(alarm).values() for d in m["Metric"]["Dimensions"]]
                  if "Metrics" in alarm else alarm["Dimensions"])
    assert dimensions and all(d == {"Name": "LoadBalancer", "Value": {"Ref": "LoadBalancerFullName"}}
                              for d in dimensions)


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
    values = params.load_env(env)
    if values["ScaleToZero"] != "true":
        pytest.skip(f"{env}: scale-to-zero off")
    assert int(values["IdleMinutes"]) * 60 > wake.wake_seconds(int(values["ModelLoadSeconds"]))


def test_the_shortest_idle_minutes_allowed_outlast_a_wake_at_the_default_budget():
    from stacks import model_load
    minimum = service_template()["Parameters"]["IdleMinutes"]["MinValue"]
    assert minimum * 60 > wake.wake_seconds(model_load.DEFAULT_LOAD_SECONDS)
