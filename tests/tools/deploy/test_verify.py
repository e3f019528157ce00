"""After the stack: the service wait, the rollback checks, the smoke test, the API key."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.error

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


# ---------------------------------------------------------------------------------------------
# No GPU capacity must not look like a hang: scaling activities while tasks are PROVISIONING
# ---------------------------------------------------------------------------------------------

GROUP = "llm-api-dev-gpu-asg"
WITH_GROUP = verify.ServiceRef(SERVICE_REF.cluster, SERVICE_REF.service,
                               SERVICE_REF.task_definition, groups=[GROUP])
TASK = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/llm-api-dev/abc"
VCPU = ("Launching a new EC2 instance. Status Reason: You have requested more vCPU capacity "
        "than your current vCPU limit of 0 allows for the instance bucket that the specified "
        "instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request "
        "to request an adjustment to this limit. Launching EC2 instance failed.")
ICE = ("Launching a new EC2 instance. Status Reason: We currently do not have sufficient "
       "g5.xlarge capacity in the Availability Zone you requested (us-east-1a). Our system will "
       "be working on provisioning additional capacity. Launching EC2 instance failed.")


def expect_provisioning(stubs, group_desired: int, group_max: int) -> None:
    ecs, autoscaling = stubs("ecs")[1], stubs("autoscaling")[1]
    ecs.add_response("list_tasks", {"taskArns": [TASK]}, {
        "cluster": SERVICE_REF.cluster, "serviceName": SERVICE_REF.service,
        "desiredStatus": "RUNNING"})
    ecs.add_response("describe_tasks", {"tasks": [{"taskArn": TASK, "lastStatus": "PROVISIONING"}]},
                     {"cluster": SERVICE_REF.cluster, "tasks": [TASK]})
    autoscaling.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [{
        "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": group_max,
        "DesiredCapacity": group_desired, "DefaultCooldown": 300, "AvailabilityZones": ["a"],
        "HealthCheckType": "EC2", "CreatedTime": NOW}]}, {"AutoScalingGroupNames": [GROUP]})


def activity(code: str, message: str) -> dict:
    return {"ActivityId": "act-1", "AutoScalingGroupName": GROUP, "Cause": "capacity provider",
            "StartTime": NOW, "StatusCode": code, "StatusMessage": message, "Progress": 100,
            "Description": "Launching a new EC2 instance.  Status Reason: " + message}


@pytest.mark.parametrize(("message", "fix"), [
    (VCPU, "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code "
           "L-DB2E81BA --desired-value"),
    ("VcpuLimitExceeded: You have requested more vCPU capacity", "--quota-code L-DB2E81BA"),
    (ICE, "add another AZ (AvailabilityZones) or InstanceType in params/dev.json"),
    ("InsufficientInstanceCapacity", "Values=g5.xlarge"),
])
def test_provisioning_tasks_print_the_latest_scaling_activity_with_the_fix(stubs, capsys,
                                                                           message, fix):
    ecs = stubs("ecs")[1]
    short = service_state([deployment("IN_PROGRESS", running=0, pendingCount=0)], 0)
    expect_describe_services(ecs, short)
    expect_provisioning(stubs, group_desired=1, group_max=2)
    stubs("autoscaling")[1].add_response(
        "describe_scaling_activities", {"Activities": [activity("Failed", message)]},
        {"AutoScalingGroupName": GROUP, "MaxRecords": 1})
    expect_describe_services(ecs, service_state([deployment("COMPLETED")], 1))
    verify.wait_for_service(aws_with(stubs, "ecs", "autoscaling"), WITH_GROUP, 600,
                            sleep=lambda s: None, params=target().params, env="dev")
    out = capsys.readouterr().out
    assert f"capacity: 1 task(s) PROVISIONING; latest scaling activity of {GROUP}" in out
    assert message[:60] in out and "Failed" in out
    assert "fix: " in out and fix in out


def test_a_group_at_its_max_size_is_named_instead_of_waiting_for_an_activity(stubs, capsys):
    ecs = stubs("ecs")[1]
    expect_describe_services(ecs, service_state([deployment("IN_PROGRESS", running=0)], 0))
    expect_provisioning(stubs, group_desired=2, group_max=2)  # no describe_scaling_activities
    expect_describe_services(ecs, service_state([deployment("COMPLETED")], 1))
    verify.wait_for_service(aws_with(stubs, "ecs", "autoscaling"), WITH_GROUP, 600,
                            sleep=lambda s: None, params=target().params, env="dev")
    out = capsys.readouterr().out
    assert f"group {GROUP} is at its MaxSize (2)" in out and "no scaling activity" in out
    assert 'raise AsgMaxSize in params/dev.json (the line "AsgMaxSize=2")' in out


def test_no_capacity_calls_while_the_service_has_its_tasks(stubs, capsys):
    ecs = stubs("ecs")[1]
    expect_describe_services(ecs, service_state([deployment("COMPLETED")], 1))
    verify.wait_for_service(aws_with(stubs, "ecs", "autoscaling"), WITH_GROUP, 600,
                            sleep=lambda s: None, params=target().params, env="dev")
    assert "capacity:" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The smoke test tells a certificate that does not cover the host from an unreachable host
# ---------------------------------------------------------------------------------------------


def tls_error() -> urllib.error.URLError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                            "verify failed: Hostname mismatch")
    error.verify_message = "Hostname mismatch, certificate is not valid for 'x.elb.amazonaws.com'"
    return urllib.error.URLError(error)


def test_a_tls_verification_failure_gets_its_own_hint_and_no_retries():
    calls = []

    def request(method, url, key, body=None):
        calls.append(url)
        raise tls_error()

    def sleep(seconds):
        pytest.fail("a certificate error must not be retried")

    with pytest.raises(DeployError, match="TLS verification failed for x.elb.amazonaws.com: "
                                          "Hostname mismatch") as error:
        verify.smoke_test("https://x.elb.amazonaws.com", "k", "llama3.2:1b", sleep=sleep,
                          request=request)
    assert len(calls) == 1
    assert "does not cover x.elb.amazonaws.com" in error.value.hint
    assert "ServiceUrl with DomainName" in error.value.hint
    assert "DNS" not in error.value.hint and "unreachable" not in error.value.message


def test_an_unresolvable_name_gets_the_dns_hint(monkeypatch):
    monkeypatch.setattr(verify, "SMOKE_RETRY_SECONDS", -1)

    def request(method, url, key, body=None):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    with pytest.raises(DeployError, match="does not resolve") as error:
        verify.smoke_test("https://llm.example.com", "k", "m", sleep=lambda s: None,
                          request=request)
    assert "DNS record" in error.value.hint and "certificate" not in error.value.hint


@pytest.fixture
def https_server(tmp_path):
    """A real TLS server on 127.0.0.1 whose self-signed certificate covers only localhost."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl not installed: the stubbed TLS error test above still runs")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_a_real_certificate_mismatch_is_reported_as_tls(https_server):
    with pytest.raises(DeployError, match="TLS verification failed for 127.0.0.1") as error:
        verify.smoke_test(f"https://127.0.0.1:{https_server}", "k", "m",
                          sleep=lambda s: pytest.fail("retried"))
    assert "does not cover 127.0.0.1" in error.value.hint
