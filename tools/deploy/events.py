"""The one waiting loop: while CloudFormation, ECS or Auto Scaling work, print what they report
as it arrives (root and nested stack events, ECS service events, the Auto Scaling group's
scaling activities when tasks wait for capacity, instance refresh progress), and stop when the
step's own condition says done, failed or too late.

Each source is an object with poll(): it reads, prints what is new, and remembers what it
printed. watch() polls them in order, then asks done(); a read that fails is reported and the
wait goes on (a flaky describe call must not hide the step's own result).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from tools import stackwatch
from tools.deploy.target import POLL_SECONDS, Aws, DeployError, aws_call, hint_for, say

T = TypeVar("T")


class Source(Protocol):
    def poll(self) -> None: ...


def watch(sources: Sequence[Source], done: Callable[[], T | None], *, timeout: float, what: str,
          hint: str, sleep: Callable[[float], None] | None = None,
          clock: Callable[[], float] | None = None, interval: float = POLL_SECONDS) -> T:
    """Poll every source, then done(); return its first non-None result. done() raises on
    failure; after timeout seconds the wait gives up with hint."""
    sleep, clock = sleep or time.sleep, clock or time.monotonic
    deadline = clock() + timeout
    while True:
        for source in sources:
            try:
                source.poll()
            except DeployError as error:
                say(f"  (not readable right now: {error.message[:200]})")
        result = done()
        if result is not None:
            return result
        if clock() > deadline:
            raise DeployError(f"{what} after {int(timeout) // 60} min", hint)
        sleep(interval)


# ---------------------------------------------------------------------------------------------
# CloudFormation: root and nested stack events until the stack settles
# ---------------------------------------------------------------------------------------------


class StackEvents:
    """New events of a root stack and its nested stacks (tools.stackwatch reads them)."""

    def __init__(self, aws: Aws, stack: str):
        self.watcher = stackwatch.EventWatcher(aws.client("cloudformation"), stack)

    def prime(self) -> None:
        aws_call(self.watcher.prime, "read the stack events")

    def poll(self) -> None:
        aws_call(self.watcher.poll, "read stack events")


SETTLED_OK = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE")


def wait_for_stack(aws: Aws, events: StackEvents, stack_id: str, action: str,
                   timeout: float = 3 * 3600, sleep: Callable[[float], None] | None = None,
                   interval: float = 10,
                   fallback_hint: str = "read the events above; fix the cause and run the "
                                        "step again") -> dict | None:
    """Until the stack is complete (returned), deleted (None), or failed/rolled back (raises,
    naming the first failed resource rather than the cancellations it caused)."""
    cfn = aws.client("cloudformation")
    deleted: dict = {}

    def done() -> dict | None:
        stack = aws_call(lambda: stackwatch.describe_stack(cfn, stack_id), "describe the stack")
        status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
        if status == "DELETE_COMPLETE" and action == "delete":
            return deleted
        if status in SETTLED_OK and action != "delete":
            return stack
        if status.endswith(("_FAILED", "ROLLBACK_COMPLETE")) or status == "DELETE_COMPLETE":
            failure = events.watcher.first_failure()
            reason = failure.line() if failure else (stack or {}).get("StackStatusReason", "")
            raise DeployError(f"{action} of {stack_id.split('/')[1] if '/' in stack_id else stack_id}"
                              f" failed ({status}). First failure: {reason}",
                              hint_for(reason) or hint_for(status) or fallback_hint)
        return None

    result = watch([events], done, timeout=timeout, what=f"stack still not done ({action})",
                   hint="look at the events above; run the step again to resume watching",
                   sleep=sleep, interval=interval)
    return None if result is deleted else result


# ---------------------------------------------------------------------------------------------
# ECS: service events and the deployment's progress
# ---------------------------------------------------------------------------------------------


class ServiceEvents:
    """describe_services once per poll: prints new service events and the primary deployment's
    counts when they change; `service` holds the latest description for done() checks."""

    def __init__(self, aws: Aws, cluster: str, service: str):
        self.ecs = aws.client("ecs")
        self.cluster, self.name = cluster, service
        self.service: dict = {}
        self.seen: set[str] = set()
        self.first = True
        self.last_status = ""

    def poll(self) -> None:
        described = aws_call(lambda: self.ecs.describe_services(cluster=self.cluster,
                                                                services=[self.name]),
                             f"describe service {self.name}")
        if not described.get("services"):
            raise DeployError(f"ECS service {self.name} not found in {self.cluster}")
        self.service = described["services"][0]
        for event in reversed(self.service.get("events", [])[:20]):
            if event["id"] not in self.seen:
                self.seen.add(event["id"])
                if not self.first:  # the first read is history, not this deploy's news
                    say(f"  ecs: {event['message']}")
        self.first = False
        deployments = self.service.get("deployments", [])
        primary = self.primary
        status = (f"  {len(deployments)} deployment(s); primary "
                  f"{primary.get('rolloutState', '?')}: running {primary.get('runningCount', 0)}"
                  f"/{primary.get('desiredCount', 0)}, pending {primary.get('pendingCount', 0)}"
                  f", failed {primary.get('failedTasks', 0)}")
        if status != self.last_status:
            say(status)
            self.last_status = status

    @property
    def primary(self) -> dict:
        return next((d for d in self.service.get("deployments", [])
                     if d.get("status") == "PRIMARY"), {})

    @property
    def short(self) -> bool:
        return self.service.get("runningCount", 0) < self.service.get("desiredCount", 0)


# ---------------------------------------------------------------------------------------------
# Auto Scaling: why PROVISIONING tasks wait (no GPU capacity must not look like a hang)
# ---------------------------------------------------------------------------------------------

# Launch failures show up only as the group's scaling activities (StatusMessage); the texts are
# EC2's, listed in https://docs.aws.amazon.com/autoscaling/ec2/userguide/ts-as-instancelaunchfailure.html
# and ts-as-capacity.html. (substring, what to do); {type} {env} {max} are filled in.
GPU_QUOTA_CODE = "L-DB2E81BA"  # Running On-Demand G and VT instances (vCPUs)
CAPACITY_FIXES: tuple[tuple[str, str], ...] = (
    ("VcpuLimitExceeded", "the account's G/VT vCPU quota is too small for another {type}: "
     "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code "
     f"{GPU_QUOTA_CODE} --desired-value <vCPUs of {{type}} x (AsgMaxSize {{max}} + 1)>"),
    ("vCPU capacity than your current vCPU limit", "the account's G/VT vCPU quota is too small: "
     "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code "
     f"{GPU_QUOTA_CODE} --desired-value <vCPUs of {{type}} x (AsgMaxSize {{max}} + 1)>"),
    ("InsufficientInstanceCapacity", "AWS has no {type} capacity in these AZs right now: wait "
     "(Auto Scaling retries), or add an AZ that offers {type} to AvailabilityZones, or choose "
     "another InstanceType in params/{env}.json (aws ec2 describe-instance-type-offerings "
     "--location-type availability-zone --filters Name=instance-type,Values={type})"),
    ("do not have sufficient", "AWS has no {type} capacity in that AZ right now: wait, or add "
     "another AZ (AvailabilityZones) or InstanceType in params/{env}.json"),
    ("is not supported in your requested Availability Zone", "{type} is not offered in an AZ of "
     "params/{env}.json: aws ec2 describe-instance-type-offerings --location-type "
     "availability-zone --filters Name=instance-type,Values={type}"),
)


def capacity_fix(message: str, params: dict[str, str], env: str) -> str:
    for needle, fix in CAPACITY_FIXES:
        if needle in message:
            return fix.format(type=params.get("InstanceType", "<InstanceType>"), env=env,
                              max=params.get("AsgMaxSize", "?"))
    return ""


class CapacityReport:
    """While the service is short of tasks and some wait in PROVISIONING (no instance can take
    them), print the group's latest scaling activity with the fix; at MaxSize there will be no
    activity, so say that instead."""

    def __init__(self, aws: Aws, service: ServiceEvents, groups: list[str],
                 params: dict[str, str], env: str):
        self.ecs, self.autoscaling = aws.client("ecs"), aws.client("autoscaling")
        self.service, self.groups, self.params, self.env = service, groups, params, env
        self.seen: set[str] = set()
        self.said_at_max: set[tuple[str, int]] = set()

    def provisioning(self) -> int:
        ecs, cluster, name = self.ecs, self.service.cluster, self.service.name
        arns = aws_call(lambda: ecs.list_tasks(cluster=cluster, serviceName=name,
                                               desiredStatus="RUNNING")["taskArns"],
                        "list the service's tasks")
        if not arns:
            return 0
        tasks = aws_call(lambda: ecs.describe_tasks(cluster=cluster, tasks=arns[:100])["tasks"],
                         "describe the service's tasks")
        return sum(1 for t in tasks if t.get("lastStatus") == "PROVISIONING")

    def poll(self) -> None:
        if not self.groups or not self.service.service or not self.service.short:
            return
        waiting = self.provisioning()
        if not waiting:
            return
        for name in self.groups:
            self._report(name, waiting)

    def _report(self, name: str, waiting: int) -> None:
        described = aws_call(lambda: self.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name]), f"describe {name}")["AutoScalingGroups"]
        if not described:
            return
        group = described[0]
        if group["DesiredCapacity"] >= group["MaxSize"]:
            key = (name, group["MaxSize"])
            if key not in self.said_at_max:
                self.said_at_max.add(key)
                say(f"  capacity: {waiting} task(s) PROVISIONING and group {name} is at its "
                    f"MaxSize ({group['MaxSize']}): it will launch no instance, so there is no "
                    "scaling activity to wait for")
                say(f"    fix: raise AsgMaxSize in params/{self.env}.json (the line "
                    f"\"AsgMaxSize={self.params.get('AsgMaxSize', group['MaxSize'])}\") and "
                    f"deploy again, or lower ServiceMaxTasks/DeploymentMaximumPercent")
            return
        activities = aws_call(lambda: self.autoscaling.describe_scaling_activities(
            AutoScalingGroupName=name, MaxRecords=1), f"read the scaling activities of {name}"
        )["Activities"]
        if not activities or activities[0]["ActivityId"] in self.seen:
            return
        activity = activities[0]
        self.seen.add(activity["ActivityId"])
        when = activity.get("StartTime")
        clock = when.strftime("%H:%M:%S") if hasattr(when, "strftime") else "--:--:--"
        text = activity.get("StatusMessage") or activity.get("Description", "")
        say(f"  capacity: {waiting} task(s) PROVISIONING; latest scaling activity of {name} "
            f"({clock}, {activity.get('StatusCode', '?')}): {text}")
        fix = capacity_fix(f"{activity.get('StatusMessage', '')} {activity.get('Description', '')}",
                           self.params, self.env)
        if fix:
            say(f"    fix: {fix}")


# ---------------------------------------------------------------------------------------------
# Auto Scaling: instance refresh progress
# ---------------------------------------------------------------------------------------------

REFRESH_DONE = ("Successful",)
REFRESH_FAILED = ("Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed")


class RefreshProgress:
    """DescribeInstanceRefreshes: status, PercentageComplete, instances left, StatusReason."""

    def __init__(self, aws: Aws, group: str, refresh_id: str):
        self.autoscaling = aws.client("autoscaling")
        self.group, self.refresh_id = group, refresh_id
        self.refresh: dict = {}
        self.last = ""

    def poll(self) -> None:
        found = aws_call(lambda: self.autoscaling.describe_instance_refreshes(
            AutoScalingGroupName=self.group, InstanceRefreshIds=[self.refresh_id]),
            "read the instance refresh")["InstanceRefreshes"]
        if not found:
            raise DeployError(f"instance refresh {self.refresh_id} not found in {self.group}")
        self.refresh = found[0]
        line = (f"  refresh {self.refresh['Status']}: {self.refresh.get('PercentageComplete', 0)}"
                f"% complete, {self.refresh.get('InstancesToUpdate', '?')} instance(s) to "
                "replace" + (f"; {self.refresh['StatusReason']}"
                             if self.refresh.get("StatusReason") else ""))
        if line != self.last:
            say(line)
            self.last = line

    def done(self) -> dict | None:
        status = self.refresh.get("Status", "")
        if status in REFRESH_DONE:
            return self.refresh
        if status in REFRESH_FAILED:
            raise DeployError(f"instance refresh {status}: {self.refresh.get('StatusReason', '')}",
                              "read the scaling activities (docs/operations.md, 'A task is "
                              "stuck in PROVISIONING'); the old instances keep serving")
        return None
