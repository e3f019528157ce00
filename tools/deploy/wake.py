"""A service at zero tasks (scale-to-zero, stacks/scaling.py): find its wake path and use it.

`deploy` (verify.py) and `wake-check` (wakecheck.py) both start the first task the way a client
does: one request to the load balancer, whose own 503 (no registered target) drives WakeAlarm
(HTTPCode_ELB_503_Count >= 1 in 60 s), whose step policy sets exactly 1 task. Neither calls
UpdateService desiredCount=1: "as long as you have active scaling policies and alarms on a
service, Service Auto Scaling could change a desired count that was manually set by you"
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-autoscaling-stepscaling.html),
and IdleAlarm, in ALARM after IdleMinutes without a request, re-invokes its "exactly 0" policy on
every evaluation while it stays there ("Except for Auto Scaling actions, the actions happen only
on state transitions", https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
alarm-actions.html). A request counts for IdleAlarm (RequestCount + HTTPCode_ELB_503_Count), so
the same request that wakes the service also takes IdleAlarm out of ALARM. A deployment does
not block the wake: "scale-out processes continue to occur, unless suspended, during a
deployment" (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/
troubleshoot-service-auto-scaling.html).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from stacks import model_load
from stacks import wake as wake_budget
from tools import stackwatch
from tools.deploy.target import Aws, DeployError, Target, aws_call, say

# Logical IDs in the service layer (stacks/scaling.py); present only where ScaleToZero=true.
WAKE_ALARM = "WakeAlarm"
IDLE_ALARM = "IdleAlarm"
# The wake signal: WakeAlarm's 60 s period closes, CloudWatch evaluates it, the step policy
# runs (stacks/wake.py WAKE_ALARM_SECONDS is our allowance for that), twice over, plus a poll.
WAKE_SIGNAL_SECONDS = 2 * wake_budget.WAKE_ALARM_SECONDS + 60
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


def knock(url: str, timeout: float = KNOCK_TIMEOUT_SECONDS) -> int:
    """One unauthenticated GET /readyz (public: the ALB health check path); its status."""
    target = url.rstrip("/") + "/readyz"
    if urlparse(target).scheme not in ("https", "http"):
        raise DeployError(f"refusing to call {target}: not an http(s) URL")
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
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


def load_seconds(values: dict[str, str], target: Target) -> int:
    declared = target.root_parameters().get(model_load.MODEL_LOAD_SECONDS, {})
    return int(values.get(model_load.MODEL_LOAD_SECONDS) or declared.get("Default", 600))


def wake_seconds(values: dict[str, str], target: Target) -> int:
    """stacks/wake.py's upper estimate of a wake, at this environment's model-load budget."""
    return wake_budget.wake_seconds(load_seconds(values, target))


def send_wake_request(url: str, knock_with: Callable[[str], int]) -> int:
    try:
        status = knock_with(url)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DeployError(f"wake request: {url} unreachable ({error})",
                          "check the ALB security group (AlbIngressCidr must include this "
                          "machine), the DNS record and the certificate (ServiceUrl)") from None
    if status == 503:
        say(f"  GET {url.rstrip('/')}/readyz: 503 from the load balancer (no task), as expected")
    else:
        say(f"  GET {url.rstrip('/')}/readyz: {status} (expected the load balancer's 503)")
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
                "an alarm in INSUFFICIENT_DATA/OK saw no HTTPCode_ELB_503_Count: check that "
                "the request reached this load balancer (AlbIngressCidr, WAF, DNS); an alarm in "
                "ALARM whose policy did not act: read `aws application-autoscaling "
                "describe-scaling-activities --service-namespace ecs` (docs/operations.md, "
                "'Wake from zero')")
        sleep(POLL_SECONDS)


def start_one_task(aws: Aws, target: Target, tree: list[stackwatch.StackNode], cluster: str,
                   service: str, url: str | None, *, sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic,
                   knock_with: Callable[[str], int] = knock) -> dict:
    """deploy into a service at 0 tasks: wake it the way a client does, or fail saying that
    nothing was verified. Returns the service once its desired count is at least 1."""
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
    say(f"  one request to the load balancer; {path.wake_alarm} (503 count >= 1 in 60 s) sets "
        f"1 task (up to {WAKE_SIGNAL_SECONDS} s)")
    send_wake_request(url, knock_with)
    return wait_for_desired(aws, cluster, service, path, timeout=WAKE_SIGNAL_SECONDS,
                            sleep=sleep, clock=clock)
