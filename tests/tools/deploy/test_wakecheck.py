"""make wake-check (tools/deploy/wakecheck.py) against stubbed AWS responses (botocore Stubber)
and a fake clock. Stand-ins only: nothing here shows how long a real wake takes."""

from __future__ import annotations

import datetime

import pytest

from stacks import wake as wake_budget
from tests.tools.deploy.stubs import NOW, ROOT, aws_with, resource, stack, target
from tests.tools.deploy.test_wake import (
    CLUSTER,
    IDLE_ALARM,
    NESTED,
    SERVICE,
    SERVICE_ARN,
    TASK_DEFINITION,
    URL,
    WAKE_ALARM,
    expect_scalable_target,
)
from tools.deploy import wake, wakecheck
from tools.deploy.target import DeployError

GROUP = "llm-api-dev-gpu-asg"
TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/gw/1"
TASK = "arn:aws:ecs:us-east-1:123456789012:task/llm-api-dev/t1"
INSTANCE = "arn:aws:ecs:us-east-1:123456789012:container-instance/llm-api-dev/c1"
CLIENTS = ("cloudformation", "ecs", "application-autoscaling", "cloudwatch", "elbv2",
           "autoscaling", "secretsmanager")
SECONDS = datetime.timedelta(seconds=1)


class FakeClock:
    """Wall clock that moves only when the code sleeps."""

    def __init__(self):
        self.now = NOW

    def __call__(self) -> datetime.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds * SECONDS


def expect_stack(stubs, wake_path: bool = True) -> None:
    cfn = stubs("cloudformation")[1]
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        resource("Service", "AWS::CloudFormation::Stack", NESTED),
        resource("Group", "AWS::AutoScaling::AutoScalingGroup", GROUP)]}, {"StackName": ROOT})
    layer = [resource("Service", "AWS::ECS::Service", SERVICE_ARN),
             resource("TaskDefinition", "AWS::ECS::TaskDefinition", TASK_DEFINITION)]
    if wake_path:
        layer += [resource("WakeAlarm", "AWS::CloudWatch::Alarm", WAKE_ALARM),
                  resource("IdleAlarm", "AWS::CloudWatch::Alarm", IDLE_ALARM)]
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": layer},
                     {"StackName": NESTED})
    if wake_path:
        cfn.add_response("describe_stacks", {"Stacks": [stack(Outputs=[
            {"OutputKey": "ServiceUrl", "OutputValue": URL},
            {"OutputKey": "ApiKeySecretArn", "OutputValue": "arn:secret"}])]},
            {"StackName": ROOT})


def expect_counts(stubs, desired: int, running: int) -> None:
    stubs("ecs")[1].add_response("describe_services", {"services": [{
        "serviceName": SERVICE, "desiredCount": desired, "runningCount": running,
        "loadBalancers": [{"targetGroupArn": TARGET_GROUP, "containerName": "gateway",
                           "containerPort": 8000}]}]},
        {"cluster": CLUSTER, "services": [SERVICE]})


def poll_times(until: float) -> list[float]:
    """Seconds after the wake request at which wake-check polls, up to `until`."""
    times, now = [], 0.0
    for attempt in range(100):
        now += wakecheck.BACKOFF_SECONDS[min(attempt, len(wakecheck.BACKOFF_SECONDS) - 1)]
        times.append(now)
        if now >= until:
            return times
    raise AssertionError("schedule too long")


# The AWS side of one wake, in seconds after the request (what the stubs report).
WAKE = {"alarm": 90, "desired": 95, "launch_start": 130, "launch_end": 160, "registered": 180,
        "pull_start": 190, "pull_end": 195, "running": 240, "healthy": 260, "ready": 300}


def expect_key(stubs) -> None:
    stubs("secretsmanager")[1].add_response("get_secret_value", {"SecretString": "k1"},
                                            {"SecretId": "arn:secret"})


def expect_wake(stubs, request_at: datetime.datetime, description: str) -> list[float]:
    at = {k: request_at + v * SECONDS for k, v in WAKE.items()}
    polls = poll_times(WAKE["ready"])
    for when in polls:  # target health is read until it is first seen healthy
        state = "healthy" if when >= WAKE["healthy"] else "initial"
        stubs("elbv2")[1].add_response("describe_target_health", {"TargetHealthDescriptions": [
            {"Target": {"Id": "10.0.0.1", "Port": 8000}, "TargetHealth": {"State": state}}]},
            {"TargetGroupArn": TARGET_GROUP})
        if state == "healthy":
            break
    stubs("cloudwatch")[1].add_response("describe_alarm_history", {"AlarmHistoryItems": [
        {"AlarmName": WAKE_ALARM, "Timestamp": at["alarm"], "HistoryItemType": "StateUpdate",
         "HistorySummary": "Alarm updated from OK to ALARM"}]},
        {"AlarmName": WAKE_ALARM, "HistoryItemType": "StateUpdate", "StartDate": request_at,
         "ScanBy": "TimestampAscending"})
    stubs("application-autoscaling")[1].add_response("describe_scaling_activities", {
        "ScalingActivities": [
            {"ActivityId": "old", "ServiceNamespace": "ecs", "ResourceId": "r",
             "ScalableDimension": "ecs:service:DesiredCount", "Description": "to 0",
             "Cause": "idle", "StartTime": request_at - 3600 * SECONDS,
             "StatusCode": "Successful"},
            {"ActivityId": "a1", "ServiceNamespace": "ecs", "ResourceId": "r",
             "ScalableDimension": "ecs:service:DesiredCount",
             "Description": "Setting desired count to 1.", "Cause": "WakeAlarm",
             "StartTime": at["desired"], "StatusCode": "Successful"}]},
        {"ServiceNamespace": "ecs", "ResourceId": f"service/{CLUSTER}/{SERVICE}",
         "ScalableDimension": "ecs:service:DesiredCount"})
    activity = {"AutoScalingGroupName": GROUP, "Cause": "capacity provider", "Progress": 100,
                "StatusCode": "Successful"}
    stubs("autoscaling")[1].add_response("describe_scaling_activities", {"Activities": [
        # a pool refill is not the wake's launch, even when it starts first
        {**activity, "ActivityId": "refill", "StartTime": at["launch_start"] - 20 * SECONDS,
         "EndTime": at["launch_end"] + 200 * SECONDS,
         "Description": "Launching a new EC2 instance into warm pool: i-2"},
        {**activity, "ActivityId": "l1", "StartTime": at["launch_start"],
         "EndTime": at["launch_end"], "Description": f"{description}: i-1"}]},
        {"AutoScalingGroupName": GROUP})
    ecs = stubs("ecs")[1]
    ecs.add_response("list_tasks", {"taskArns": [TASK]}, {
        "cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "RUNNING"})
    ecs.add_response("describe_tasks", {"tasks": [{
        "taskArn": TASK, "containerInstanceArn": INSTANCE, "createdAt": at["desired"],
        "pullStartedAt": at["pull_start"], "pullStoppedAt": at["pull_end"],
        "startedAt": at["running"], "lastStatus": "RUNNING"}]},
        {"cluster": CLUSTER, "tasks": [TASK]})
    ecs.add_response("describe_container_instances", {"containerInstances": [{
        "containerInstanceArn": INSTANCE, "registeredAt": at["registered"]}]},
        {"cluster": CLUSTER, "containerInstances": [INSTANCE]})
    return polls


def run_check(stubs, clock: FakeClock, knock, request=None):
    calls = []

    def fake_request(method, url, key, body=None):
        calls.append((method, url, key))
        return 200, {"data": [{"id": "llama3.2:1b"}]}

    result = wakecheck.wake_check(aws_with(stubs, *CLIENTS), target(), sleep=clock.sleep,
                                  clock=clock, knock_with=knock, request=request or fake_request)
    return result, calls


@pytest.mark.parametrize("description, warm", [
    ("Launching a new EC2 instance", False),
    ("Launching a new EC2 instance from warm pool", True),
])
def test_wake_check_times_every_part_from_aws_timestamps(stubs, capsys, description, warm):
    clock = FakeClock()
    expect_stack(stubs)
    expect_scalable_target(stubs, 2)
    for counts in ((1, 1), (0, 1), (0, 0)):  # idle: scaled in, then the task drained
        expect_counts(stubs, *counts)
    expect_counts(stubs, 0, 0)  # the target group
    expect_key(stubs)
    request_at = NOW + 2 * wakecheck.ZERO_POLL_SECONDS * SECONDS
    polls = expect_wake(stubs, request_at, description)
    knocks = []

    def knock(url, key):
        if key is None:  # the gate check: before the wake request, no key, the listener's 401
            assert not knocks
            return 401
        assert key == "k1"
        knocks.append((clock.now - request_at).total_seconds())
        return 200 if knocks[-1] >= WAKE["ready"] else 503

    result, calls = run_check(stubs, clock, knock)
    assert result == 0
    assert knocks == [0.0, *polls]  # one wake request, then the backoff schedule
    assert calls == [("GET", f"{URL}/v1/models", "k1")]
    out = capsys.readouterr().out
    assert "without a key: 401 from the listener" in out and "k1" not in out
    healthy_seen = next(t for t in polls if t >= WAKE["healthy"])
    parts = wake_budget.budget(wake.with_defaults(target().params, target()))
    budget = {key: sum(p.seconds for p in parts if p.measured == key)
              for key, _, _ in wake_budget.MEASURED}
    measured = {key: WAKE[end] - WAKE.get(start, 0) for key, start, end in wake_budget.MEASURED
                if end != "healthy"}
    measured["healthy"] = healthy_seen - WAKE["running"]
    for key, seconds in measured.items():
        label = wakecheck.LABELS[key]
        assert f"{label:<52} {budget[key]:6.0f} s {seconds:8.0f} s" in out, (label, out)
    for label, seconds in {"first 200 from /readyz (polled)": polls[-1] - healthy_seen,
                           "(in parallel) wake policy: desired count 1":
                               WAKE["desired"] - WAKE["alarm"]}.items():
        assert f"{label:<52}        - {seconds:8.0f} s" in out, (label, out)
    assert (f"{'total: request -> first 200':<52} {wake_budget.total(parts):6.0f} s "
            f"{polls[-1]:8.0f} s") in out
    assert ("the instance came from the warm pool" in out) is warm
    assert "waiting for the service to run 0 tasks" in out and IDLE_ALARM in out


N = len(wakecheck.PARTS)


@pytest.mark.parametrize("marks, lines", [
    ({}, ["not seen"] * (N + 1)),
    ({"request": NOW, "alarm": NOW + 61 * SECONDS}, ["61 s"] + ["not seen"] * N),
    ({"request": NOW, "first_200": NOW + 900 * SECONDS, "healthy": NOW + 850 * SECONDS},
     ["not seen"] * (N - 2) + ["50 s", "not seen", "900 s"]),
])
def test_timeline_says_what_it_did_not_see(marks, lines):
    printed = wakecheck.timeline(marks)
    assert len(printed) == N + 2  # a header, the parts, the total
    for line, expected in zip(printed[1:], lines, strict=True):
        assert line.rstrip().endswith(expected), (line, expected)


def test_every_measured_part_has_a_budget_and_a_label():
    parts = wake_budget.budget(wake.with_defaults(target().params, target()))
    assert {p.measured for p in parts} == {key for key, _, _ in wake_budget.MEASURED}
    assert set(wakecheck.LABELS) == {key for key, _, _ in wake_budget.MEASURED}


def test_a_listener_that_forwards_requests_without_a_key_fails_the_check(stubs):
    expect_stack(stubs)
    expect_scalable_target(stubs, 2)
    expect_counts(stubs, 0, 0)
    expect_counts(stubs, 0, 0)
    with pytest.raises(DeployError, match="without a key got 503, not the listener's 401"):
        run_check(stubs, FakeClock(), knock=lambda url, key: 503)


def test_a_stack_without_scale_to_zero_is_refused(stubs):
    expect_stack(stubs, wake_path=False)
    with pytest.raises(DeployError, match="no WakeAlarm: ScaleToZero is off") as raised:
        run_check(stubs, FakeClock(), knock=lambda url, key: pytest.fail("sent a request"))
    assert "ScaleToZero=true in params/dev.json" in raised.value.hint


def test_night_is_refused_before_waiting(stubs):
    expect_stack(stubs)
    expect_scalable_target(stubs, 0)
    with pytest.raises(DeployError, match="MaxCapacity 0"):
        run_check(stubs, FakeClock(), knock=lambda url, key: pytest.fail("sent a request"))


def test_a_service_that_never_reaches_zero_names_the_idle_alarm(stubs):
    clock = FakeClock()
    expect_stack(stubs)
    expect_scalable_target(stubs, 2)
    timeout = wakecheck.zero_timeout(target().params, target())
    assert timeout == (int(target().params["IdleMinutes"]) * 60 + wake.wake_budget.WAKE_ALARM_SECONDS + wakecheck.TIMEOUTS.deregistration_delay_seconds + wakecheck.ZERO_MARGIN_SECONDS)  # noqa: E501
    for _ in range(timeout // wakecheck.ZERO_POLL_SECONDS + 2):
        expect_counts(stubs, 1, 1)
    stubs("cloudwatch")[1].add_response("describe_alarms", {"MetricAlarms": [{
        "AlarmName": IDLE_ALARM, "StateValue": "OK", "StateReason": "1 datapoint > 0",
        "StateUpdatedTimestamp": NOW}]}, {"AlarmNames": [IDLE_ALARM]})
    with pytest.raises(DeployError, match=f"still runs 1 task.*{IDLE_ALARM} is OK"):
        run_check(stubs, clock, knock=lambda url, key: pytest.fail("sent a request"))


def test_a_first_answer_other_than_the_albs_503_is_not_a_wake(stubs):
    expect_stack(stubs)
    expect_scalable_target(stubs, 2)
    expect_counts(stubs, 0, 0)
    expect_counts(stubs, 0, 0)
    expect_key(stubs)
    with pytest.raises(DeployError, match="got 200, not the load balancer's 503"):
        run_check(stubs, FakeClock(), knock=lambda url, key: 401 if key is None else 200)


def test_no_200_within_the_bound_fails_with_where_to_look(stubs):
    clock = FakeClock()
    expect_stack(stubs)
    expect_scalable_target(stubs, 2)
    expect_counts(stubs, 0, 0)
    expect_counts(stubs, 0, 0)
    expect_key(stubs)
    bound = wake.wake_seconds(target().params, target()) + wakecheck.WAKE_MARGIN_SECONDS
    for _ in poll_times(bound + 1):
        stubs("elbv2")[1].add_response("describe_target_health", {
            "TargetHealthDescriptions": []}, {"TargetGroupArn": TARGET_GROUP})
    with pytest.raises(DeployError, match=f"no 200 from .* within {bound // 60} min") as raised:
        run_check(stubs, clock, knock=lambda url, key: 401 if key is None else 503)
    assert "PROVISIONING" in raised.value.hint
