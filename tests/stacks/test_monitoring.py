"""Monitoring layer: the alarm topic, the alarms that notify it, the placement rule, the dashboard."""

from __future__ import annotations

import json
from functools import cache

import pytest

from app.contract import IN_FLIGHT_REQUESTS
from stacks import model_load, wake
from tests.cfn import generated, props, rendered, resources
from tools import params


def monitoring_template():
    return generated()["monitoring.json"]


def test_dashboard_is_valid_json_with_the_gateway_metrics():
    text = json.dumps(monitoring_template())
    assert "object at 0x" not in text
    body = props(monitoring_template()["Resources"]["Dashboard"])["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(body)["widgets"]
    assert len(widgets) >= 5
    assert IN_FLIGHT_REQUESTS.name in body and "OutputTokens" in body


def test_placement_rule_watches_the_service_that_root_passes_in():
    rule = props(monitoring_template()["Resources"]["PlacementFailureRule"])
    (arn,) = rule["EventPattern"]["resources"]
    assert arn["Fn::Sub"][1] == {"Name": {"Ref": "ServiceName"}}
    wiring = generated()["root.json"]["Resources"]["Monitoring"]["Properties"]["Parameters"]
    assert wiring["ServiceName"] == {"Fn::GetAtt": ["Service", "Outputs.ServiceName"]}
    assert generated()["root.json"]["Outputs"]["AlarmTopicArn"]["Value"] == {
        "Fn::GetAtt": ["Monitoring", "Outputs.AlarmTopicArn"]}


# -- alarms ------------------------------------------------------------------------------


def test_alarms_cover_5xx_health_latency_and_capacity_and_notify_the_topic():
    alarms = resources(monitoring_template(), "AWS::CloudWatch::Alarm")
    # What must be covered; an added alarm joins them (and must notify the topic too).
    assert set(alarms) >= {"Target5xxAlarm", "Elb5xxAlarm", "UnhealthyHostsAlarm",
                           "TimeToFirstTokenAlarm", "PendingTasksAlarm",
                           "CapacityProvisioningAlarm"}
    assert props(alarms["TimeToFirstTokenAlarm"])["ExtendedStatistic"] == "p95"
    for alarm in alarms.values():
        assert props(alarm)["AlarmActions"] == [{"Ref": "AlarmTopic"}]


@cache
def rendered_alarms(env: str) -> dict[str, dict]:
    templates = rendered(env)
    return {name: props(body) for name, body in
            resources(templates["monitoring.json"], "AWS::CloudWatch::Alarm").items()}


@pytest.mark.parametrize("env", params.environments())
def test_elb_5xx_alarm_leaves_out_the_wake_503s_only_with_scale_to_zero(env):
    alarm = rendered_alarms(env)["Elb5xxAlarm"]
    stats = {m["Id"]: (m["MetricStat"]["Metric"]["MetricName"], m["MetricStat"]["Stat"],
                       m["MetricStat"]["Period"], m["MetricStat"]["Metric"]["Dimensions"][0]["Name"])
             for m in alarm["Metrics"] if "MetricStat" in m}
    (expression,) = [m["Expression"] for m in alarm["Metrics"] if m.get("ReturnData")]
    if params.load_env(env)["ScaleToZero"] == "true":
        assert stats == {"elb5xx": ("HTTPCode_ELB_5XX_Count", "Sum", 60, "LoadBalancer"),
                         "elb503": ("HTTPCode_ELB_503_Count", "Sum", 60, "LoadBalancer")}
        assert expression == "elb5xx - FILL(elb503, 0)"
    else:
        assert stats == {"elb5xx": ("HTTPCode_ELB_5XX_Count", "Sum", 60, "LoadBalancer")}
        assert expression == "elb5xx"
    assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (10, 5, 3)
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("env", params.environments())
def test_pending_tasks_alarm_waits_out_a_cold_pull_and_the_ollama_start(env):
    # PendingTaskCount: a task that has an instance, pulling and starting; at most a cold pull
    # and the Ollama StartTimeout before ECS stops it (stacks/wake.py pending_seconds).
    alarm = rendered_alarms(env)["PendingTasksAlarm"]
    load = int(params.load_env(env)["ModelLoadSeconds"])
    assert alarm["EvaluationPeriods"] * alarm["Period"] > wake.pending_seconds(load)
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]
    assert (alarm["MetricName"], alarm["Statistic"], alarm["Threshold"]) == (
        "PendingTaskCount", "Maximum", 1)


@pytest.mark.parametrize("env", params.environments())
def test_tasks_waiting_for_an_instance_page_on_capacity_provider_reservation(env):
    """PendingTaskCount counts PENDING tasks only; a task waiting for a GPU instance is
    PROVISIONING, which CapacityProviderReservation above 100 shows. The alarm waits out one
    cold managed-scaling step (one step covers every start: test_wake_budget.py)."""
    alarm = rendered_alarms(env)["CapacityProvisioningAlarm"]
    cluster = rendered(env)["cluster.json"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "AWS/ECS/ManagedScaling", "CapacityProviderReservation")
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert dims == {"ClusterName": cluster["Outputs"]["ClusterName"]["Value"],
                    "CapacityProviderName": cluster["Outputs"]["CapacityProviderName"]["Value"]}
    assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["Statistic"]) == (
        100, "GreaterThanThreshold", "Minimum")
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"]
    assert alarm["EvaluationPeriods"] * alarm["Period"] > wake.capacity_seconds()
    assert alarm["TreatMissingData"] == "notBreaching"


def test_pending_alarm_minutes_are_mapped_for_every_load_tier():
    mapping = monitoring_template()["Mappings"][wake.MAPPING]
    for tier in model_load.LOAD_TIERS:
        assert mapping[str(tier)]["PendingAlarmMinutes"] * 60 > wake.pending_seconds(tier)


def test_placement_failures_reach_the_topic_through_a_rule_it_allows():
    rule = props(monitoring_template()["Resources"]["PlacementFailureRule"])
    assert rule["EventPattern"]["detail"]["eventName"] == ["SERVICE_TASK_PLACEMENT_FAILURE"]
    assert rule["Targets"][0]["Arn"] == {"Ref": "AlarmTopic"}
    policy = props(monitoring_template()["Resources"]["AlarmTopicPolicy"])["PolicyDocument"]
    principals = {s["Principal"]["Service"] for s in policy["Statement"]}
    assert principals == {"events.amazonaws.com", "cloudwatch.amazonaws.com"}


def test_alarm_topic_is_encrypted_with_a_key_its_publishers_may_use():
    topic = props(monitoring_template()["Resources"]["AlarmTopic"])
    assert topic["KmsMasterKeyId"] == {"Ref": "KmsKeyArn"}
    key_policy = props(generated()["config.json"]["Resources"]["KmsKey"])["KeyPolicy"]
    by_sid = {s["Sid"]: s for s in key_policy["Statement"]}
    alarms, rule = by_sid["AlarmsPublishForThisAccount"], by_sid["EventBridgePublishes"]
    assert alarms["Principal"]["Service"] == "cloudwatch.amazonaws.com"
    assert alarms["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    # SNS: no aws:Source* condition in the key policy for EventBridge to an encrypted topic.
    assert rule["Principal"]["Service"] == "events.amazonaws.com" and "Condition" not in rule


