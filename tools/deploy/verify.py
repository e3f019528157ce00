"""After the stack: wait until the ECS service is stable (printing what ECS and, while tasks
wait for an instance, Auto Scaling report), check that the task definition this deploy created
is the one running, and smoke-test the endpoint."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

from app.contract import TIMEOUTS
from stacks import names
from tools import stackwatch
from tools.deploy import wake
from tools.deploy.events import CapacityReport, ServiceEvents, watch
from tools.deploy.target import Aws, DeployError, Target, aws_call, say

# Stability wait: a GPU instance launch (capacity provider scale-out, boot, ECS agent, multi-GB
# image pull), then the model load (the service's health check grace period), then the old
# task's deregistration delay; plus a margin. The CLI's waiter gives up after 10 minutes.
INSTANCE_READY_SECONDS = 600
WAIT_MARGIN_SECONDS = 300
DEFAULT_GRACE_SECONDS = 300
SMOKE_TIMEOUT_SECONDS = TIMEOUTS.first_token_seconds + 30
SMOKE_RETRY_SECONDS = 180  # a new DNS record can take a minute or two to resolve


@dataclass
class ServiceRef:
    cluster: str
    service: str
    task_definition: str  # the ARN the stack created: what must be running
    groups: list[str] = field(default_factory=list)  # Auto Scaling groups behind the cluster


def service_ref(tree: list[stackwatch.StackNode], label: str, service: dict) -> ServiceRef:
    """Cluster, name and the task definition the same stack created, for one ECS service."""
    node = next(n for n in tree if n.label == label)
    parts = service["PhysicalResourceId"].split(":", 5)[-1].split("/")  # service/<cluster>/<name>
    clusters = node.of_type("AWS::ECS::Cluster") or [
        r for _, r in stackwatch.resources_of_type(tree, "AWS::ECS::Cluster")]
    cluster = parts[1] if len(parts) == 3 else (clusters[0]["PhysicalResourceId"] if clusters
                                                else "default")
    task_definitions = node.of_type("AWS::ECS::TaskDefinition")
    groups = [r["PhysicalResourceId"] for _, r in
              stackwatch.resources_of_type(tree, "AWS::AutoScaling::AutoScalingGroup")
              if r.get("PhysicalResourceId")]
    return ServiceRef(cluster=cluster, service=parts[-1],
                      task_definition=task_definitions[0]["PhysicalResourceId"]
                      if task_definitions else "", groups=groups)


def find_service(tree: list[stackwatch.StackNode]) -> ServiceRef | None:
    services = stackwatch.resources_of_type(tree, "AWS::ECS::Service")
    return service_ref(tree, *services[0]) if services else None


def stability_timeout(values: dict[str, str], target: Target) -> int:
    declared = target.root_parameters()
    grace = values.get("HealthCheckGracePeriodSeconds") or declared.get(
        "HealthCheckGracePeriodSeconds", {}).get("Default", DEFAULT_GRACE_SECONDS)
    return (INSTANCE_READY_SECONDS + int(grace) + TIMEOUTS.deregistration_delay_seconds
            + WAIT_MARGIN_SECONDS)


def wait_for_service(aws: Aws, ref: ServiceRef, timeout: int,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic,
                     params: dict[str, str] | None = None, env: str = "<env>",
                     min_running: int = 0) -> dict:
    """Until the service runs its desired count on ONE deployment; print what ECS says and,
    while tasks wait in PROVISIONING, what the Auto Scaling group says. min_running=1 (a woken
    service): at least one task must run, and a fall back to 0 desired tasks fails the wait."""
    service = ServiceEvents(aws, ref.cluster, ref.service)
    sources: list = [service]
    if ref.groups:
        sources.append(CapacityReport(aws, service, ref.groups, params or {}, env))
    say(f"waiting for ECS service {ref.service} in {ref.cluster} to be stable (up to "
        f"{timeout // 60} min: instance launch, image pull, model load, old task drain)")

    def stable() -> dict | None:
        primary = service.primary
        if primary.get("rolloutState") == "FAILED":
            raise DeployError(f"ECS stopped the rollout: {primary.get('rolloutStateReason', '')}",
                              "the circuit breaker rolled back; find why tasks stopped "
                              "(docs/operations.md, 'A task fails health checks')")
        current = service.service
        if min_running and current.get("desiredCount", 0) < min_running:
            raise DeployError(f"the service went back to {current.get('desiredCount', 0)} "
                              f"desired tasks before a task ran: {wake.NOTHING_VERIFIED}",
                              "the idle policy took it down again (IdleAlarm still in ALARM?): "
                              "run the deploy again; docs/operations.md, 'Wake from zero'")
        if (len(current.get("deployments", [])) == 1
                and current.get("runningCount", 0) >= min_running
                and primary.get("rolloutState", "COMPLETED") == "COMPLETED"
                and primary.get("runningCount") == primary.get("desiredCount")
                and current.get("runningCount") == current.get("desiredCount")):
            say("  service stable")
            return current
        return None

    return watch(sources, stable, timeout=timeout, what=f"service {ref.service} not stable",
                 hint="see docs/operations.md, 'A task is stuck in PROVISIONING' and 'A task "
                      "fails health checks'", sleep=sleep, clock=clock)


def verify_task_definition(service: dict, ref: ServiceRef) -> None:
    running = service.get("taskDefinition", "")
    primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"),
                   {})
    if ref.task_definition and (running != ref.task_definition
                                or primary.get("taskDefinition") != ref.task_definition):
        raise DeployError(f"the service runs {running}, not the task definition this deploy "
                          f"created ({ref.task_definition}): ECS rolled back",
                          "the new tasks never became healthy; see docs/operations.md, 'A task "
                          "fails health checks', then deploy again")
    say(f"running task definition is the new one: {running.rsplit('/', 1)[-1]}")


def http_json(method: str, url: str, key: str, body: dict | None = None,
              timeout: float = SMOKE_TIMEOUT_SECONDS) -> tuple[int, dict]:
    if urlparse(url).scheme not in ("https", "http"):
        raise DeployError(f"refusing to call {url}: not an http(s) URL")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={  # noqa: S310 (scheme checked above)
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read()[:300].decode(errors="replace")}


def tls_verification_error(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed, if that is what this error is. urllib wraps it in
    URLError.reason (https://docs.python.org/3/library/urllib.error.html); Python raises
    SSLCertVerificationError for an unknown CA and for a hostname the certificate does not
    cover (https://docs.python.org/3/library/ssl.html#ssl.SSLCertVerificationError)."""
    reason = getattr(error, "reason", error)
    for candidate in (reason, error):
        if isinstance(candidate, ssl.SSLCertVerificationError):
            return candidate
    return None


def unreachable(base: str, error: BaseException) -> DeployError:
    host = urlparse(base).hostname or base
    if isinstance(getattr(error, "reason", error), socket.gaierror):
        return DeployError(f"smoke test: {host} does not resolve ({error})",
                           "check the DNS record: CreateDnsRecord/HostedZoneId in params/<env>"
                           ".json, and that the zone is delegated (dig NS of the parent domain)")
    return DeployError(f"smoke test: {base} unreachable ({error})",
                       "check the ALB security group (AlbIngressCidr must include this machine) "
                       "and the DNS record")


def smoke_test(url: str, key: str, model: str, sleep: Callable[[float], None] = time.sleep,
               request: Callable = http_json) -> None:
    base = url.rstrip("/")
    say(f"smoke test against {base}")
    deadline = time.monotonic() + SMOKE_RETRY_SECONDS
    while True:
        try:
            status, body = request("GET", f"{base}/v1/models", key)
            break
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            failed = tls_verification_error(error)
            if failed is not None:  # a certificate does not fix itself: no retry
                host = urlparse(base).hostname
                raise DeployError(
                    f"smoke test: TLS verification failed for {host}: "
                    f"{failed.verify_message or failed}",
                    f"the certificate the load balancer serves does not cover {host}: call the "
                    "service by the name the certificate was issued for, i.e. the stack's "
                    "ServiceUrl with DomainName set in params/<env>.json (the ALB's own "
                    "*.elb.amazonaws.com name matches no certificate)") from None
            if time.monotonic() > deadline:
                raise unreachable(base, error) from None
            say(f"  not reachable yet ({error}); retrying")
            sleep(15)
    ids = [m.get("id") for m in body.get("data", [])] if status == 200 else []
    if status != 200 or model not in ids:
        raise DeployError(f"smoke test: GET /v1/models answered {status} {str(body)[:200]}, "
                          f"expected 200 listing {model}", "read the gateway log group "
                          "(docs/operations.md, 'A task fails health checks')")
    say(f"  GET /v1/models: 200, lists {model}")
    status, body = request("POST", f"{base}/v1/chat/completions", key, {
        "model": model, "max_tokens": 8, "stream": False,
        "messages": [{"role": "user", "content": "Reply with the word OK."}]})
    if status != 200 or not body.get("choices"):
        raise DeployError(f"smoke test: POST /v1/chat/completions answered {status} "
                          f"{str(body)[:200]}", "read the gateway and ollama log groups")
    say("  POST /v1/chat/completions: 200, a completion came back")


def api_key(aws: Aws, secret_arn: str) -> str:
    secrets = aws.client("secretsmanager")
    value = aws_call(lambda: secrets.get_secret_value(SecretId=secret_arn)["SecretString"],
                     "read the API key secret")
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise DeployError("the API key secret is empty", "docs/operations.md, 'Rotate the API "
                          "keys'")
    return keys[-1]  # during a rotation ("old,new") the newest key


def verify_service(aws: Aws, target: Target, values: dict[str, str], outputs: dict[str, str],
                   wait_timeout: int | None, *, sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic,
                   knock: Callable[[str, str | None], int] = wake.knock) -> int:
    cfn = aws.client("cloudformation")
    tree = aws_call(lambda: stackwatch.stack_tree(cfn, target.root_stack),
                    "list the stack's resources")
    ref = find_service(tree)
    if ref is None:
        say("no ECS service in the stack yet: nothing to wait for or smoke test")
        return 0
    url = outputs.get(names.SERVICE_URL)
    secret = outputs.get(names.API_KEY_SECRET_ARN)
    timeout = wait_timeout or stability_timeout(values, target)
    min_running = 0
    # At 0 desired tasks (scale-to-zero) "stable at 0/0" would pass with nothing run: wake it
    # the way a client does (tools/deploy/wake.py), then wait for one task of the new definition.
    if wake.describe(aws, ref.cluster, ref.service).get("desiredCount", 0) == 0:
        # The wake request carries the key: only that passes the listener's forward rule.
        wake.start_one_task(aws, target, tree, ref.cluster, ref.service, url,
                            key=api_key(aws, secret) if secret else None, sleep=sleep,
                            clock=clock, knock_with=knock)
        if not wait_timeout:
            timeout += wake.wake_seconds(values, target)
        min_running = 1
    service = wait_for_service(aws, ref, timeout, sleep=sleep, clock=clock, params=values,
                               env=target.env, min_running=min_running)
    verify_task_definition(service, ref)
    if url and secret:
        smoke_test(url, api_key(aws, secret), target.model, sleep=sleep)
    else:
        say(f"no {names.SERVICE_URL}/{names.API_KEY_SECRET_ARN} output: smoke test skipped")
    say("")
    say(f"service URL: {url}")
    say("API key (comma-separated list; any one works): aws secretsmanager get-secret-value "
        f"--secret-id {secret} --query SecretString --output text")
    return 0
