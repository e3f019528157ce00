"""After the stack: the service wait, the rollback checks, the smoke test, the API key."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from tests.tools.deploy.stubs import ACCOUNT, NOW, REGION, aws_with, target
from tools.deploy import verify
from tools.deploy.target import DeployError

SERVICE_REF = verify.ServiceRef("llm-api-dev", "llm-api-dev-gateway",
                                f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gw:7")

def service_state(deployments: list[dict], running: int, desired: int = 1,
                  task_definition: str = SERVICE_REF.task_definition, events=()) -> dict:
    return {"services": [{
        "serviceName": SERVICE_REF.service, "taskDefinition": task_definition,
        "runningCount": running, "desiredCount": desired, "deployments": deployments,
        "events": [{"id": str(i), "createdAt": NOW, "message": m} for i, m in events]}]}

def deployment(state: str, status: str = "PRIMARY", running: int = 1, task: str | None = None,
               **extra) -> dict:
    return {"id": f"ecs-svc/{status}", "status": status, "rolloutState": state,
            "runningCount": running, "desiredCount": 1, "pendingCount": 0,
            "taskDefinition": task or SERVICE_REF.task_definition, **extra}

def expect_describe_services(ecs: Stubber, response: dict) -> None:
    ecs.add_response("describe_services", response, {"cluster": SERVICE_REF.cluster,
                                                     "services": [SERVICE_REF.service]})

def test_wait_for_service_waits_for_one_completed_deployment(stubs, capsys):
    ecs = stubs("ecs")[1]
    old = deployment("COMPLETED", "ACTIVE", task="arn:old:6")
    expect_describe_services(ecs, service_state([deployment("IN_PROGRESS", running=0), old], 1,
                                                events=[("1", "old event")]))
    expect_describe_services(ecs, service_state(
        [deployment("IN_PROGRESS", running=0), old], 1,
        events=[("2", "service has started 1 tasks"), ("1", "old event")]))
    expect_describe_services(ecs, service_state([deployment("COMPLETED")], 1))
    service = verify.wait_for_service(aws_with(stubs, "ecs"), SERVICE_REF, timeout=600,
                                      sleep=lambda s: None)
    verify.verify_task_definition(service, SERVICE_REF)
    out = capsys.readouterr().out
    assert "ecs: service has started 1 tasks" in out and "old event" not in out
    assert "service stable" in out and "running task definition is the new one" in out

def test_a_circuit_breaker_rollback_fails_the_deploy(stubs):
    ecs = stubs("ecs")[1]
    expect_describe_services(ecs, service_state([deployment(
        "FAILED", running=0, rolloutStateReason="ECS deployment circuit breaker: tasks failed "
        "to start.")], 1))
    with pytest.raises(DeployError, match="circuit breaker") as error:
        verify.wait_for_service(aws_with(stubs, "ecs"), SERVICE_REF, 600, sleep=lambda s: None)
    assert "health checks" in error.value.hint

def test_a_rollback_that_looks_stable_is_caught_by_the_task_definition_check():
    rolled_back = service_state([deployment("COMPLETED", task="arn:old:6")], 1,
                                task_definition="arn:old:6")["services"][0]
    with pytest.raises(DeployError, match="not the task definition this deploy created"):
        verify.verify_task_definition(rolled_back, SERVICE_REF)

def test_wait_for_service_gives_up_at_its_own_timeout(stubs):
    ecs = stubs("ecs")[1]
    for _ in range(3):
        expect_describe_services(ecs, service_state([deployment("IN_PROGRESS", running=0)], 0))
    ticks = iter([0, 0, 400, 700])
    with pytest.raises(DeployError, match="not stable after 10 min") as error:
        verify.wait_for_service(aws_with(stubs, "ecs"), SERVICE_REF, 600, sleep=lambda s: None,
                                clock=lambda: next(ticks))
    assert "PROVISIONING" in error.value.hint

def test_the_stability_timeout_comes_from_the_model_load_budget():
    base = verify.stability_timeout({"HealthCheckGracePeriodSeconds": "600"}, target())
    longer = verify.stability_timeout({"HealthCheckGracePeriodSeconds": "1200"}, target())
    assert longer - base == 600
    assert base > 600  # longer than the CLI waiter's 10 minutes

def test_smoke_test_checks_models_and_a_completion():
    calls = []

    def request(method, url, key, body=None):
        calls.append((method, url, key, body))
        if url.endswith("/v1/models"):
            return 200, {"data": [{"id": "llama3.2:1b"}]}
        return 200, {"choices": [{"message": {"content": "OK"}}]}

    verify.smoke_test("https://api.example/", "k1", "llama3.2:1b", request=request)
    assert [c[:3] for c in calls] == [("GET", "https://api.example/v1/models", "k1"),
                                      ("POST", "https://api.example/v1/chat/completions", "k1")]
    assert calls[1][3]["max_tokens"] <= 16

def test_smoke_test_fails_when_the_model_is_not_served():
    def request(method, url, key, body=None):
        return 200, {"data": [{"id": "other"}]}

    with pytest.raises(DeployError, match="expected 200 listing llama3.2:1b"):
        verify.smoke_test("https://api.example", "k", "llama3.2:1b", request=request)

def test_the_newest_api_key_is_used_during_a_rotation(stubs):
    secrets = stubs("secretsmanager")[1]
    secrets.add_response("get_secret_value", {"SecretString": "old1,new2"}, {"SecretId": "arn"})
    assert verify.api_key(aws_with(stubs, "secretsmanager"), "arn") == "new2"
