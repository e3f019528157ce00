"""make wake-check ENV=<env>: time a wake from zero tasks against a real account, part by part.

1. wait (bounded) until the service runs 0 tasks: IdleAlarm goes to ALARM after IdleMinutes
   without an authenticated request, the idle policy sets 0 tasks, ECS drains the task; send
   nothing meanwhile;
2. one request to ServiceUrl/readyz WITHOUT a key, which must get the listener's 401 (the auth
   gate, stacks/auth_gate.py: it reaches no task and wakes nothing), then one WITH the API key
   (read as the smoke test reads it, never printed), which must get the load balancer's 503;
3. poll /readyz with the key and backoff until 200 (each poll is a request a real client would
   retry), then one GET /v1/models;
4. print the time per part, beside stacks/wake.py's budget for the same part (Part.measured),
   from AWS's own timestamps: WakeAlarm's state change (CloudWatch alarm history), the instance
   launch or warm-pool start (Auto Scaling activity), the container instance registration, the
   task's image pull and RUNNING (ECS Task pullStartedAt/pullStoppedAt/startedAt:
   https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html), and the desired
   count 1 (Application Auto Scaling activity, in parallel with the instance). Target health
   has no timestamp in the ELB API (DescribeTargetHealth), so "healthy" and "first 200" are
   this machine's clock, to the resolution of the polls.

Tested with stubbed AWS responses and a fake clock only (tests/tools/deploy/test_wakecheck.py):
it has NOT run against AWS.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

from app.contract import TIMEOUTS
from stacks import auth_gate, names, scaling
from stacks import wake as wake_budget
from tools import stackwatch
from tools.deploy import verify, wake
from tools.deploy.target import Aws, DeployError, Target, aws_call, say

UTC = datetime.UTC
ZERO_POLL_SECONDS = 60
ZERO_MARGIN_SECONDS = 300
WAKE_MARGIN_SECONDS = 300  # ALB healthy threshold and the first answers after the estimate
BACKOFF_SECONDS = (5, 10, 20, 40, 60)  # then 60 s: what docs/infrastructure.md tells clients
GATE_STATUS = int(auth_gate.STATUS)  # the listener's answer to a request without a key

Clock = Callable[[], datetime.datetime]

# Each measured interval of stacks/wake.py MEASURED, labelled; then what the budget does not
# state: the parallel desired count and the client's first 200 (its own polling).
LABELS = {
    "alarm": "wake alarm: 503 counted, WakeAlarm in ALARM",
    "instance_requested": "alarm action: the group starts an instance",
    "instance_start": "instance start (warm pool) or launch + boot",
    "registered": "ECS agent registers the instance",
    "placed": "task placed, image pull starts",
    "pulled": "image pull",
    "running": "containers start, model load: task RUNNING",
    "healthy": "load balancer health checks: target healthy (polled)",
}
PARTS = tuple((LABELS[key], start, end, key) for key, start, end in wake_budget.MEASURED) + (
    ("first 200 from /readyz (polled)", "healthy", "first_200", None),
    ("(in parallel) wake policy: desired count 1", "alarm", "desired", None),
)


def timeline(marks: dict[str, datetime.datetime | None],
             parts: list[wake_budget.Part] | None = None) -> list[str]:
    """One line per part: stacks/wake.py's budget and what was measured (or not seen); then
    the total from the request to the first 200."""
    budgeted: dict[str, float] = {}
    for part in parts or []:
        budgeted[part.measured] = budgeted.get(part.measured, 0) + part.seconds
    lines = [f"  {'part':<52} {'budget':>8} {'measured':>10}"]
    for label, start, end, key in PARTS:
        a, b = marks.get(start), marks.get(end)
        took = f"{(b - a).total_seconds():8.0f} s" if a and b else "  not seen"
        plan = f"{budgeted[key]:6.0f} s" if key in budgeted else "       -"
        lines.append(f"  {label:<52} {plan} {took}")
    first, request = marks.get("first_200"), marks.get("request")
    total = f"{(first - request).total_seconds():8.0f} s" if first and request else "  not seen"
    plan = f"{wake_budget.total(parts):6.0f} s" if parts else "       -"
    lines.append(f"  {'total: request -> first 200':<52} {plan} {total}")
    return lines


def zero_timeout(values: dict[str, str], target: Target) -> int:
    idle = int(values.get(scaling.IDLE_MINUTES) or target.root_parameters().get(
        scaling.IDLE_MINUTES, {}).get("Default", 30))
    return (idle * 60 + wake_budget.WAKE_ALARM_SECONDS + TIMEOUTS.deregistration_delay_seconds
            + ZERO_MARGIN_SECONDS)


def wait_for_zero(aws: Aws, ref: verify.ServiceRef, path: wake.WakePath, timeout: int,
                  sleep: Callable[[float], None], clock: Clock) -> None:
    say(f"waiting for the service to run 0 tasks (up to {timeout // 60} min): "
        f"{path.idle_alarm or 'IdleAlarm'} goes to ALARM after IdleMinutes without a request, "
        "the idle policy sets 0 tasks, ECS drains the task (deregistration delay "
        f"{TIMEOUTS.deregistration_delay_seconds} s). Send no request to the service meanwhile.")
    deadline = clock() + datetime.timedelta(seconds=timeout)
    last = None
    while True:
        service = wake.describe(aws, ref.cluster, ref.service)
        counts = (service.get("desiredCount", 0), service.get("runningCount", 0))
        if counts != last:
            say(f"  desired {counts[0]}, running {counts[1]}")
            last = counts
        if counts == (0, 0):
            return
        if clock() > deadline:
            state = wake.alarm_state(aws, path.idle_alarm) if path.idle_alarm else "unknown"
            raise DeployError(f"the service still runs {counts[1]} task(s) after {timeout // 60}"
                              f" min; {path.idle_alarm} is {state}",
                              "something still sends authenticated requests (the idle alarm "
                              "counts every request that reaches the forward rule), or "
                              "IdleMinutes is longer: run wake-check when the environment is idle")
        sleep(ZERO_POLL_SECONDS)


def target_group(service: dict) -> str | None:
    groups = [lb.get("targetGroupArn") for lb in service.get("loadBalancers", [])]
    return next((g for g in groups if g), None)


def healthy(aws: Aws, group: str | None) -> bool:
    if not group:
        return False
    elbv2 = aws.client("elbv2")
    found = aws_call(lambda: elbv2.describe_target_health(TargetGroupArn=group),
                     "read the target group's health")["TargetHealthDescriptions"]
    return any(t.get("TargetHealth", {}).get("State") == "healthy" for t in found)


def poll_until_ready(aws: Aws, url: str, key: str, group: str | None, timeout: int,
                     knock_with: Callable[[str, str | None], int], sleep: Callable[[float], None],
                     clock: Clock) -> dict[str, datetime.datetime | None]:
    marks: dict[str, datetime.datetime | None] = {"healthy": None}
    deadline = clock() + datetime.timedelta(seconds=timeout)
    last = None
    for attempt in range(10_000):
        sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
        if marks["healthy"] is None and healthy(aws, group):
            marks["healthy"] = clock()
        try:
            status: int | str = knock_with(url, key)
        except OSError as error:  # urllib's URLError included: retry like a client would
            status = f"no answer ({error})"
        if status != last:
            say(f"  {clock():%H:%M:%S} /readyz: {status}")
            last = status
        if status == 200:
            marks["first_200"] = clock()
            marks["healthy"] = marks["healthy"] or marks["first_200"]
            return marks
        if clock() > deadline:
            break
    raise DeployError(f"no 200 from {url}/readyz within {timeout // 60} min of the wake request",
                      "read the ECS service events and the task's stopped reason "
                      "(docs/operations.md, 'A task is stuck in PROVISIONING', 'A task fails "
                      "health checks')")


def aws_marks(aws: Aws, ref: verify.ServiceRef, path: wake.WakePath,
              since: datetime.datetime) -> dict[str, datetime.datetime | None]:
    """The AWS timestamps of this wake (those after `since`, the wake request)."""
    marks: dict[str, datetime.datetime | None] = {}
    after = lambda when: when is not None and when >= since - datetime.timedelta(seconds=60)  # noqa: E731
    cloudwatch = aws.client("cloudwatch")
    history = aws_call(lambda: cloudwatch.describe_alarm_history(
        AlarmName=path.wake_alarm, HistoryItemType="StateUpdate", StartDate=since,
        ScanBy="TimestampAscending")["AlarmHistoryItems"], "read the wake alarm's history")
    marks["alarm"] = next((h["Timestamp"] for h in history
                           if "to ALARM" in h.get("HistorySummary", "")), None)
    scaling_api = aws.client("application-autoscaling")
    activities = aws_call(lambda: scaling_api.describe_scaling_activities(
        ServiceNamespace="ecs", ResourceId=wake.resource_id(ref.cluster, ref.service),
        ScalableDimension="ecs:service:DesiredCount")["ScalingActivities"],
        "read the service's scaling activities")
    marks["desired"] = min((a["StartTime"] for a in activities if after(a.get("StartTime"))),
                           default=None)
    # Auto Scaling describes a launch as "Launching a new EC2 instance: i-...", a warm-pool start
    # as "... from warm pool: i-..." and a pool refill as "... into warm pool: i-..." (not part
    # of the wake) (awslabs/ec2-spot-workshops at 68d19cf0eaee0b98a91dcc08ad30cec781fb7d8a,
    # content/efficient-and-resilient-ec2-auto-scaling/lab1/91-launch-from-warm-pool.md).
    autoscaling = aws.client("autoscaling")
    launches = [a for group in ref.groups for a in aws_call(
        lambda group=group: autoscaling.describe_scaling_activities(
            AutoScalingGroupName=group)["Activities"], f"read the activities of {group}")
        if after(a.get("StartTime")) and a.get("Description", "").startswith("Launching")
        and "into warm pool" not in a.get("Description", "")]
    first = min(launches, key=lambda a: a["StartTime"], default=None)
    marks["launch_start"] = first["StartTime"] if first else None
    marks["launch_end"] = first.get("EndTime") if first else None
    warm = first is not None and "from warm pool" in first.get("Description", "")
    marks["warm_pool"] = marks["launch_start"] if warm else None
    ecs = aws.client("ecs")
    arns = aws_call(lambda: ecs.list_tasks(cluster=ref.cluster, serviceName=ref.service,
                                           desiredStatus="RUNNING")["taskArns"],
                    "list the service's tasks")
    tasks = aws_call(lambda: ecs.describe_tasks(cluster=ref.cluster, tasks=arns)["tasks"],
                     "describe the service's tasks") if arns else []
    task = min((t for t in tasks if after(t.get("createdAt"))),
               key=lambda t: t["createdAt"], default=None)
    for mark, key in (("task_created", "createdAt"), ("pull_start", "pullStartedAt"),
                      ("pull_end", "pullStoppedAt"), ("running", "startedAt")):
        marks[mark] = task.get(key) if task else None
    instance = task.get("containerInstanceArn") if task else None
    found = aws_call(lambda: ecs.describe_container_instances(
        cluster=ref.cluster, containerInstances=[instance])["containerInstances"],
        "describe the task's container instance") if instance else []
    registered = found[0].get("registeredAt") if found else None
    marks["registered"] = registered if after(registered) else None
    return marks


def wake_check(aws: Aws, target: Target, *, sleep: Callable[[float], None] = time.sleep,
               clock: Clock = lambda: datetime.datetime.now(UTC),
               knock_with: Callable[[str, str | None], int] = wake.knock,
               request: Callable = verify.http_json) -> int:
    cfn = aws.client("cloudformation")
    tree = aws_call(lambda: stackwatch.stack_tree(cfn, target.root_stack),
                    "list the stack's resources")
    ref = verify.find_service(tree)
    path = wake.wake_path(tree)
    if ref is None or path is None:
        raise DeployError(f"stack {target.root_stack} has no "
                          + ("ECS service" if ref is None else f"{wake.WAKE_ALARM}: ScaleToZero "
                             "is off there"), f"set ScaleToZero=true in params/{target.env}.json"
                          f" and make deploy ENV={target.env}")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.root_stack),
                     f"read stack {target.root_stack}")
    outputs = stackwatch.outputs_of(stack)
    url, secret = outputs.get(names.SERVICE_URL), outputs.get(names.API_KEY_SECRET_ARN)
    if not url or not secret:
        raise DeployError(f"stack {target.root_stack} has no {names.SERVICE_URL} and "
                          f"{names.API_KEY_SECRET_ARN} outputs (the wake request needs both)")
    wake.refuse_at_night(wake.scalable_target(aws, ref.cluster, ref.service), target.env,
                         "a wake now would only time the night's 503s")
    values = target.params
    wait_for_zero(aws, ref, path, zero_timeout(values, target), sleep, clock)
    group = target_group(wake.describe(aws, ref.cluster, ref.service))
    parts = wake_budget.budget(wake.with_defaults(values, target))
    bound = wake_budget.total(parts) + WAKE_MARGIN_SECONDS
    gate = knock_with(url, None)
    if gate != GATE_STATUS:
        raise DeployError(f"GET {url}/readyz without a key got {gate}, not the listener's "
                          f"{GATE_STATUS}: requests without a key reach the target group (and "
                          "wake the service)", "deploy the current templates "
                          "(stacks/auth_gate.py: the HTTPS listener's rules)")
    say(f"  GET {url.rstrip('/')}/readyz without a key: {gate} from the listener (no wake)")
    key = verify.api_key(aws, secret)
    say(f"one request to {url}/readyz with the API key, then /readyz with backoff until 200 "
        f"(up to {bound // 60} min: stacks/wake.py's budget + {WAKE_MARGIN_SECONDS} s)")
    request_at = clock()
    status = wake.send_wake_request(url, key, knock_with)
    if status != 503:
        raise DeployError(f"the first request got {status}, not the load balancer's 503: the "
                          "service was not at zero, so this would not time a wake",
                          "run wake-check again when the environment is idle")
    marks = {"request": request_at,
             **poll_until_ready(aws, url, key, group, bound, knock_with, sleep, clock)}
    say(f"  /readyz: 200 after {(marks['first_200'] - request_at).total_seconds():.0f} s")
    status, body = request("GET", f"{url.rstrip('/')}/v1/models", key)
    if status != 200:
        raise DeployError(f"GET /v1/models answered {status} {str(body)[:200]} after the "
                          "wake", "read the gateway log group")
    say("  GET /v1/models (authenticated): 200")
    marks |= aws_marks(aws, ref, path, request_at)
    say(f"wake of {ref.service} by part (AWS timestamps; 'polled' = this machine's clock):")
    for line in timeline(marks, parts):
        say(line)
    if marks.get("launch_start") is None:
        say("  no instance launch after the request: an instance was already in the cluster")
    elif marks.get("warm_pool"):
        say("  the instance came from the warm pool")
    return 0
