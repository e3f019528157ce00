"""A service at zero tasks (scale-to-zero, stacks/scaling.py): find its wake path and use it.

`deploy` (verify.py) and `wake-check` (wakecheck.py) both start the first task the way a client
does: one request with the API key (only a request with `Authorization: Bearer ...` reaches the
forward rule, stacks/auth_gate.py; without one the listener answers 401 and nothing wakes),
whose 503 from the load balancer (no registered target) drives WakeAlarm (a 503 while the
service runs no task), whose step policies set exactly 1 task and 1 instance. The key is read
from the API-key secret as the smoke test reads it (verify.api_key) and never printed. Neither calls
UpdateService desiredCount=1: "as long as you have active scaling policies and alarms on a
service, Service Auto Scaling could change a desired count that was manually set by you"
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-autoscaling-stepscaling.html),
and IdleAlarm, in ALARM after IdleMinutes without a request, re-invokes its "exactly 0" policy on
every evaluation while it stays there ("Except for Auto Scaling actions, the actions happen only
on state transitions", https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
alarm-actions.html). An authenticated request counts for IdleAlarm (its 503), so the same
request that wakes the service also takes IdleAlarm out of ALARM. A deployment does
not block the wake: "scale-out processes continue to occur, unless suspended, during a
deployment" (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/
troubleshoot-service-auto-scaling.html).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from stacks import wake as wake_budget
from tools import stackwatch
from tools.deploy.target import Aws, DeployError, Target, aws_call, say

# Logical IDs in the service layer (stacks/scaling.py); present only where ScaleToZero=true.
WAKE_ALARM = "WakeAlarm"
IDLE_ALARM = "IdleAlarm"
# The wake signal: WakeAlarm's 60 s period closes, CloudWatch evaluates it, the step policies
# run (stacks/wake.py WAKE_ALARM_SECONDS + ACTION_SECONDS), twice over, plus a poll.
WAKE_SIGNAL_SECONDS = 2 * (wake_budget.WAKE_ALARM_SECONDS + wake_budget.ACTION_SECONDS) + 60
KNOCK_TIMEOUT_SECONDS = 30
POLL_SECONDS = 15
NOTHING_VERIFIED = "nothing verified: no task of the new task definition ran"


@dataclass(frozen=True)
class WakePath:
    wake_alarm: str  # alarm names (the physical IDs CloudFormation gave them)
    idle_alarm: str | None


def wake_path(tree: list[stackwatch.StackNode]) -> WakePath | None:
    """The stack's wake alarm (and idle alarm), or None when ScaleToZero is off there."""
    alarms = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
              for _, r in stackwatch.resources_of_type(tree, "AWS::CloudWatch::Alarm")}
    if not alarms.get(WAKE_ALARM):
        return None
    return WakePath(alarms[WAKE_ALARM], alarms.get(IDLE_ALARM) or None)


def resource_id(cluster: str, service: str) -> str:
    # "ECS service - The resource type is service and the unique identifier is the cluster name
    # and service name. Example: service/my-cluster/my-service"
    # (https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DescribeScalableTargets.html)
    return f"service/{cluster}/{service}"


def scalable_target(aws: Aws, cluster: str, service: str) -> dict | None:
    client = aws.client("application-autoscaling")
    found = aws_call(lambda: client.describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[resource_id(cluster, service)],
        ScalableDimension="ecs:service:DesiredCount")["ScalableTargets"],
        "read the service's scalable target (application-autoscaling)")
    return found[0] if found else None


def refuse_at_night(target: dict | None, env: str, what: str) -> None:
    """MaxCapacity 0 is the night action (ScaleDownSchedule): it caps the wake policy too."""
    if target is not None and target.get("MaxCapacity") == 0:
        raise DeployError(
            f"the service's scalable target has MaxCapacity 0 (the night action of "
            f"ScheduledScaling): no policy can start a task until ScaleUpSchedule; {what}",
            f"run it again after ScaleUpSchedule (params/{env}.json; the night/morning times "
            "and ScheduleTimezone), or set ScheduledScaling=false and deploy")


def alarm_state(aws: Aws, name: str) -> str:
    """'ALARM since 12:01:05 UTC: <reason>' for one alarm, or why it could not be read."""
    cloudwatch = aws.client("cloudwatch")
    try:
        alarms = aws_call(lambda: cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"],
                          f"read alarm {name}")
    except DeployError as error:
        return f"unknown ({error.message})"
    if not alarms:
        return "not found"
    alarm = alarms[0]
    when = alarm.get("StateUpdatedTimestamp")
    since = f" since {when:%H:%M:%S %Z}" if hasattr(when, "strftime") else ""
    return f"{alarm.get('StateValue', '?')}{since}: {alarm.get('StateReason', '')[:200]}"


def knock(url: str, key: str | None, timeout: float = KNOCK_TIMEOUT_SECONDS) -> int:
    """One GET /readyz, with the API key as a bearer token (None: without); its status.

    With a key it passes the listener's forward rule: the load balancer's 503 at zero tasks,
    the gateway's /readyz once a task is registered. The key goes in the header only.
    """
    target = url.rstrip("/") + "/readyz"
    if urlparse(target).scheme not in ("https", "http"):
        raise DeployError(f"refusing to call {target}: not an http(s) URL")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(target, headers=headers)  # noqa: S310 (scheme checked above)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def describe(aws: Aws, cluster: str, service: str) -> dict:
    ecs = aws.client("ecs")
    found = aws_call(lambda: ecs.describe_services(cluster=cluster, services=[service]),
                     f"describe service {service}")["services"]
    if not found:
        raise DeployError(f"ECS service {service} not found in {cluster}")
    return found[0]


def with_defaults(values: Mapping[str, str], target: Target) -> dict[str, str]:
    """The environment's values over the root template's defaults (what deploys)."""
    defaults = {name: str(spec["Default"]) for name, spec in target.root_parameters().items()
                if "Default" in spec}
    return {**defaults, **values}


def wake_seconds(values: Mapping[str, str], target: Target) -> int:
    """stacks/wake.py's designed wake, for this environment's values."""
    return wake_budget.wake_seconds(with_defaults(values, target))


def send_wake_request(url: str, key: str, knock_with: Callable[[str, str | None], int]) -> int:
    try:
        status = knock_with(url, key)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DeployError(f"wake request: {url} unreachable ({error})",
                          "check the ALB security group (AlbIngressCidr must include this "
                          "machine), the DNS record and the certificate (ServiceUrl)") from None
    if status == 503:
        say(f"  GET {url.rstrip('/')}/readyz with the API key: 503 from the load balancer (no "
            "task), as expected")
    else:
        say(f"  GET {url.rstrip('/')}/readyz with the API key: {status} (expected the load "
            "balancer's 503)")
    return status


def wait_for_desired(aws: Aws, cluster: str, service: str, path: WakePath, *,
                     timeout: float, sleep: Callable[[float], None],
                     clock: Callable[[], float]) -> dict:
    """Poll describe_services until desiredCount >= 1; on timeout name the wake alarm's state."""
    deadline = clock() + timeout
    while True:
        current = describe(aws, cluster, service)
        if current.get("desiredCount", 0) >= 1:
            say(f"  desired count {current['desiredCount']}: the wake policy started a task")
            return current
        if clock() > deadline:
            raise DeployError(
                f"the service stayed at 0 desired tasks for {int(timeout)} s after the wake "
                f"request; {path.wake_alarm} is {alarm_state(aws, path.wake_alarm)}",
                "an alarm in INSUFFICIENT_DATA/OK saw no 503 while no task ran: check that the "
                "request reached this load balancer with the key (AlbIngressCidr, WAF, DNS; a "
                "request without a bearer key gets the listener's 401 and wakes nothing); an alarm in "
                "ALARM whose policy did not act: read `aws application-autoscaling "
                "describe-scaling-activities --service-namespace ecs` (docs/operations.md, "
                "'Wake from zero')")
        sleep(POLL_SECONDS)


def start_one_task(aws: Aws, target: Target, tree: list[stackwatch.StackNode], cluster: str,
                   service: str, url: str | None, *, key: str | None,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic,
                   knock_with: Callable[[str, str | None], int] = knock) -> dict:
    """deploy into a service at 0 tasks: wake it the way a client does (with the API key), or
    fail saying that nothing was verified. Returns the service once its desired count is >= 1."""
    say(f"the service {service} is at 0 desired tasks (scaled to zero): starting one task of "
        "the new task definition before verifying it")
    refuse_at_night(scalable_target(aws, cluster, service), target.env, NOTHING_VERIFIED)
    path = wake_path(tree)
    if path is None:
        raise DeployError(
            f"the service is at 0 tasks and this stack has no wake path (no {WAKE_ALARM}: "
            f"ScaleToZero is off): {NOTHING_VERIFIED}",
            "find who set the desired count to 0 (ECS service events); raise it with "
            "autoscaling (ServiceMinTasks) and deploy again")
    if not url:
        raise DeployError(f"the stack has no ServiceUrl output to send the wake request to: "
                          f"{NOTHING_VERIFIED}")
    if not key:
        raise DeployError(f"no API key to send the wake request with (the stack has no "
                          f"ApiKeySecretArn output): {NOTHING_VERIFIED}",
                          "a request without a bearer key gets the listener's 401 and wakes "
                          "nothing (docs/infrastructure.md, Scale to zero)")
    say(f"  one authenticated request to the load balancer; {path.wake_alarm} (a 503 while no "
        f"task runs) sets 1 task and 1 instance (up to {WAKE_SIGNAL_SECONDS} s)")
    send_wake_request(url, key, knock_with)
    return wait_for_desired(aws, cluster, service, path, timeout=WAKE_SIGNAL_SECONDS,
                            sleep=sleep, clock=clock)
