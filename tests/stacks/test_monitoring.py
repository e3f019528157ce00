"""Monitoring layer: the alarm topic, the alarms that notify it, the placement rule, the dashboard."""

from __future__ import annotations

import json

from app.contract import IN_FLIGHT_REQUESTS
from tests.cfn import generated, props, resources


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
    alarms = {props(a)["MetricName"]: props(a)
              for a in resources(monitoring_template(), "AWS::CloudWatch::Alarm").values()}
    assert set(alarms) == {"HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count",
                           "UnHealthyHostCount", "TimeToFirstToken", "PendingTaskCount"}
    assert alarms["TimeToFirstToken"]["ExtendedStatistic"] == "p95"
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


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


