"""deploy into a service at zero tasks (tools/deploy/wake.py through verify.verify_service).

Stubbed AWS (botocore Stubber): every case pins the calls the deploy makes, in order, and the
Stubber fails on any other call, so "no UpdateService" is part of every case. The wake request
and the smoke test are fakes that record their calls (with the key they were given: only a
request with the key passes the listener's forward rule); the clock is fake.
"""

from __future__ import annotations

import pytest

from stacks import wake as wake_budget
from tests.tools.deploy.stubs import ACCOUNT, NOW, REGION, ROOT, aws_with, resource, target
from tools import params
from tools.deploy import verify, wake
from tools.deploy.target import DeployError

CLUSTER, SERVICE = "llm-api-dev", "llm-api-dev-gateway"
SERVICE_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{SERVICE}"
TASK_DEFINITION = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gw:8"
NESTED = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{ROOT}-Service-1/2"
WAKE_ALARM, IDLE_ALARM = f"{ROOT}-Service-WakeAlarm-1", f"{ROOT}-Service-IdleAlarm-1"
URL = "https://llm.dev.example.com"
OUTPUTS = {"ServiceUrl": URL, "ApiKeySecretArn": "arn:secret"}


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def expect_tree(stubs, wake_path: bool) -> None:
    cfn = stubs("cloudformation")[1]
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        resource("Service", "AWS::CloudFormation::Stack", NESTED)]}, {"StackName": ROOT})
    service_layer = [resource("Service", "AWS::ECS::Service", SERVICE_ARN),
                     resource("TaskDefinition", "AWS::ECS::TaskDefinition", TASK_DEFINITION)]
    if wake_path:
        service_layer += [resource("WakeAlarm", "AWS::CloudWatch::Alarm", WAKE_ALARM),
                          resource("IdleAlarm", "AWS::CloudWatch::Alarm", IDLE_ALARM)]
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": service_layer},
                     {"StackName": NESTED})


def expect_service(stubs, desired: int, running: int = 0, state: str = "COMPLETED") -> None:
    stubs("ecs")[1].add_response("describe_services", {"services": [{
        "serviceName": SERVICE, "taskDefinition": TASK_DEFINITION, "desiredCount": desired,
        "runningCount": running, "events": [], "deployments": [{
            "id": "ecs-svc/1", "status": "PRIMARY", "rolloutState": state,
            "taskDefinition": TASK_DEFINITION, "desiredCount": desired,
            "runningCount": running, "pendingCount": 0}]}]},
        {"cluster": CLUSTER, "services": [SERVICE]})


def expect_scalable_target(stubs, max_capacity: int | None) -> None:
    targets = [] if max_capacity is None else [{
        "ServiceNamespace": "ecs", "ResourceId": f"service/{CLUSTER}/{SERVICE}",
        "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 0,
        "MaxCapacity": max_capacity, "RoleARN": "arn:role", "CreationTime": NOW}]
    stubs("application-autoscaling")[1].add_response(
        "describe_scalable_targets", {"ScalableTargets": targets},
        {"ServiceNamespace": "ecs", "ResourceIds": [f"service/{CLUSTER}/{SERVICE}"],
         "ScalableDimension": "ecs:service:DesiredCount"})


def expect_alarm(stubs, state: str, reason: str) -> None:
    stubs("cloudwatch")[1].add_response("describe_alarms", {"MetricAlarms": [{
        "AlarmName": WAKE_ALARM, "StateValue": state, "StateReason": reason,
        "StateUpdatedTimestamp": NOW}]}, {"AlarmNames": [WAKE_ALARM]})


@pytest.fixture
def run(stubs, monkeypatch):
    """verify_service with recorded wake requests and smoke tests; returns (calls, result)."""
    calls: dict[str, list] = {"knock": [], "smoke": []}
    monkeypatch.setattr(verify, "smoke_test",
                        lambda url, key, model, sleep=None: calls["smoke"].append((url, key)))
    monkeypatch.setattr(verify, "api_key", lambda aws, arn: "k1")

    def go(knock_status: int = 503, timeout: int | None = None, outputs=None):
        clock = FakeClock()

        def knock(url, key):
            calls["knock"].append((url, key, clock.now))
            return knock_status

        aws = aws_with(stubs, "cloudformation", "ecs", "application-autoscaling", "cloudwatch")
        result = verify.verify_service(aws, target(), target().params, outputs or OUTPUTS,
                                       timeout, sleep=clock.sleep, clock=clock, knock=knock)
        return calls, result, clock
    return go


# (case, the stack has WakeAlarm, scalable target MaxCapacity (None: not registered),
#  desired counts ECS reports while the deploy waits for the wake, the error expected or None)
ZERO_CASES = [
    ("night: MaxCapacity 0", True, 0, [], ["MaxCapacity 0", "ScaleUpSchedule",
                                           "nothing verified"]),
    ("no wake path (ScaleToZero off)", False, 2, [], ["no wake path", "no WakeAlarm",
                                                      "nothing verified"]),
    ("no wake path, no scalable target", False, None, [], ["no wake path"]),
    ("wake path: the request wakes it", True, 2, [0, 0, 1], None),
    ("wake path: the alarm never acts", True, 2, [0] * 22, ["stayed at 0 desired tasks",
                                                            WAKE_ALARM, "INSUFFICIENT_DATA"]),
]


@pytest.mark.parametrize("case, has_wake, max_capacity, desired, error", ZERO_CASES)
def test_deploy_into_a_service_at_zero(stubs, run, capsys, case, has_wake, max_capacity,
                                       desired, error):
    expect_tree(stubs, has_wake)
    expect_service(stubs, 0)  # after the stack settled: scaled to zero
    expect_scalable_target(stubs, max_capacity)
    for count in desired:
        expect_service(stubs, count)
    if error and "stayed at 0" in error[0]:
        expect_alarm(stubs, "INSUFFICIENT_DATA", "Insufficient Data: 1 datapoint was unknown")
    if error is None:  # woken: the stability wait sees the task start, then run
        expect_service(stubs, 1, running=0, state="IN_PROGRESS")
        expect_service(stubs, 1, running=1)
        calls, result, clock = run()
        assert result == 0, case
        # exactly one wake request, before any wait, with the key the smoke test uses
        assert calls["knock"] == [(URL, "k1", 0.0)]
        assert calls["smoke"] == [(URL, "k1")]
        out = capsys.readouterr().out
        assert "503 from the load balancer" in out and "service stable" in out
        assert "running task definition is the new one: gw:8" in out
        return
    with pytest.raises(DeployError) as raised:
        run()
    text = f"{raised.value.message} {raised.value.hint}"
    for fragment in error:
        assert fragment in text, (case, text)
    assert "stable" not in raised.value.message


def test_a_deploy_never_calls_it_stable_at_zero(stubs, run):
    """The check that would have caught it: the old verify_service waited for "stable at 0/0",
    passed the task definition check and smoke-tested a service that ran no task. Called with
    the old signature, so it runs unchanged against the old code (where it fails: no error)."""
    expect_tree(stubs, wake_path=False)
    expect_service(stubs, 0, running=0)
    expect_scalable_target(stubs, 2)
    aws = aws_with(stubs, "cloudformation", "ecs", "application-autoscaling")
    with pytest.raises(DeployError, match="nothing verified"):
        verify.verify_service(aws, target(), target().params, OUTPUTS, None)


def test_a_woken_service_that_falls_back_to_zero_fails_the_wait(stubs, run):
    expect_tree(stubs, wake_path=True)
    expect_service(stubs, 0)
    expect_scalable_target(stubs, 2)
    expect_service(stubs, 1)  # the wake policy acted
    expect_service(stubs, 0)  # the idle policy took it down again before a task ran
    with pytest.raises(DeployError, match="went back to 0 desired tasks") as raised:
        run()
    assert "nothing verified" in raised.value.message and "IdleAlarm" in raised.value.hint


def test_a_running_service_is_verified_without_a_wake(stubs, run):
    expect_tree(stubs, wake_path=True)
    expect_service(stubs, 1, running=1)  # the first look
    expect_service(stubs, 1, running=1)  # the stability wait
    calls, result, _ = run()
    assert result == 0 and calls["knock"] == [] and calls["smoke"] == [(URL, "k1")]


def test_the_wake_time_is_added_to_the_stability_timeout(stubs, run, capsys):
    expect_tree(stubs, wake_path=True)
    expect_service(stubs, 0)
    expect_scalable_target(stubs, 2)
    expect_service(stubs, 1)
    expect_service(stubs, 1, running=1)
    run()
    base = verify.stability_timeout(target().params, target())
    wake_time = wake.wake_seconds(target().params, target())
    assert wake_time == wake_budget.wake_seconds(params.with_defaults("dev"))
    assert f"up to {(base + wake_time) // 60} min" in capsys.readouterr().out


@pytest.mark.parametrize("resources, expected", [
    ([], None),
    ([("WakeAlarm", WAKE_ALARM)], wake.WakePath(WAKE_ALARM, None)),
    ([("WakeAlarm", WAKE_ALARM), ("IdleAlarm", IDLE_ALARM)],
     wake.WakePath(WAKE_ALARM, IDLE_ALARM)),
    ([("IdleAlarm", IDLE_ALARM), ("ElbFiveXxAlarm", "x")], None),
])
def test_wake_path_is_the_stacks_wake_alarm(resources, expected):
    from tools.stackwatch import StackNode

    tree = [StackNode("Service", NESTED, [resource(logical, "AWS::CloudWatch::Alarm", name)
                                          for logical, name in resources])]
    assert wake.wake_path(tree) == expected


def test_a_wake_without_the_api_key_is_refused_before_any_request(stubs, run):
    """Without the key the request gets the listener's 401 and wakes nothing
    (stacks/auth_gate.py): the deploy must not send it and wait for a wake that cannot come."""
    expect_tree(stubs, wake_path=True)
    expect_service(stubs, 0)
    expect_scalable_target(stubs, 2)
    with pytest.raises(DeployError, match="no API key") as raised:
        run(outputs={"ServiceUrl": URL})
    assert "nothing verified" in raised.value.message and "401" in raised.value.hint


def test_the_wake_request_carries_the_key_in_the_header_only(monkeypatch):
    sent = {}

    class Response:
        status = 503

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

    def urlopen(request, timeout):
        sent.update(url=request.full_url, headers=dict(request.header_items()), timeout=timeout)
        return Response()

    monkeypatch.setattr(wake.urllib.request, "urlopen", urlopen)
    assert wake.knock(URL, "k-secret") == 503
    assert sent["headers"] == {"Authorization": "Bearer k-secret"}
    assert "k-secret" not in sent["url"]
    wake.knock(URL, None)
    assert sent["headers"] == {}  # without a key: no Authorization header at all
