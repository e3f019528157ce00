"""How long a task takes from "needed" to "serving", part by part, and what the alarms allow for it.

A wake from zero tasks (scale-to-zero, stacks/service.py) and a scale-out onto a new instance go
through the same parts; only the first adds the wake alarm:

1. the wake alarm: one 60 s period of HTTPCode_ELB_503_Count, evaluated after the period closes
   (WAKE_ALARM_SECONDS is our allowance for both, not an AWS figure);
2. the capacity provider adds an instance: managed scaling tracks CapacityProviderReservation
   with a target tracking policy that ECS attaches to the Auto Scaling group
   (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-auto-scaling.html;
   CAPACITY_SCALE_OUT_SECONDS is our allowance for it);
3. the instance launches, boots the ECS GPU AMI and registers with the cluster
   (INSTANCE_LAUNCH_SECONDS: the capacity provider's InstanceWarmupPeriod in stacks/cluster.py,
   the same estimate; 300 s is also the API's default, API_ManagedScaling
   https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ManagedScaling.html).
   A warm-pool instance skips the boot from scratch; Spot groups cannot
   have a warm pool (stacks/cluster.py);
4. the task: image pull + Ollama start + model load, within ModelLoadSeconds (L), then the
   first passing Ollama check (stacks/model_load.py rule 1); ECS stops the task if the Ollama
   check has not passed by its StartTimeout (rule 2), so a task is PENDING at most that long;
5. the gateway starts (dependsOn HEALTHY), ECS registers it and the ALB needs
   HealthyThresholdCount passing checks (a load-balancer parameter, not known here).

The pending-task alarm (stacks/monitoring.py) must not fire on parts 2-4 of an ordinary wake
or scale-out: it waits PENDING_MARGIN_MINUTES longer than the longest a task can legitimately
wait for an instance and then sit PENDING before ECS gives up on it.
"""

from __future__ import annotations

import math

from stacks import model_load

WAKE_ALARM_SECONDS = 120
CAPACITY_SCALE_OUT_SECONDS = 120
INSTANCE_LAUNCH_SECONDS = 300  # = ManagedScaling InstanceWarmupPeriod (stacks/cluster.py)
PENDING_MARGIN_MINUTES = 2
MAPPING = "WakeBudget"


def pending_seconds(load_seconds: int) -> int:
    """Longest an ordinary start keeps a task waiting: capacity + launch + Ollama StartTimeout."""
    check = model_load.container_check(load_seconds)
    return CAPACITY_SCALE_OUT_SECONDS + INSTANCE_LAUNCH_SECONDS + check.start_timeout


def pending_alarm_minutes(load_seconds: int) -> int:
    """Evaluation periods (60 s each) of the pending-task alarm for a load budget."""
    return math.ceil(pending_seconds(load_seconds) / 60) + PENDING_MARGIN_MINUTES


def wake_seconds(load_seconds: int) -> int:
    """Upper estimate of a wake from zero, up to the gateway starting (parts 1-4)."""
    check = model_load.container_check(load_seconds)
    return (WAKE_ALARM_SECONDS + CAPACITY_SCALE_OUT_SECONDS + INSTANCE_LAUNCH_SECONDS
            + load_seconds + check.interval)


def mapping() -> dict[str, dict[str, int]]:
    """Template Mapping: load tier -> pending-alarm minutes (CloudFormation has no arithmetic)."""
    return {str(load): {"PendingAlarmMinutes": pending_alarm_minutes(load)}
            for load in model_load.LOAD_TIERS}
