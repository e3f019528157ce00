"""A deploy while the night action holds the service at MaxCapacity 0 (ScheduledScaling,
stacks/scaling.py): what the change set does to that cap, said before it executes, and
`--keep-night-cap`, which puts the cap back after the deploy.

What CloudFormation does to a capacity a scheduled action changed:
- It updates only the resources whose template or parameter values changed: "CloudFormation
  updates resources based on differences between what you submit and the stack's current
  template. Resources that haven't changed run without disruption during the update process"
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-update-behaviors.html).
  The night action's MaxCapacity 0 is not in any template, so a deploy whose change set leaves
  the ScalableTarget out leaves the cap as it is.
- A deploy that does update the ScalableTarget re-registers it: the resource type's update
  handler calls application-autoscaling:RegisterScalableTarget, and MinCapacity and MaxCapacity
  are required properties, always in the model it sends (the registry schema of
  AWS::ApplicationAutoScaling::ScalableTarget, as cfn-lint 1.58.0 bundles it: handlers.update,
  required; the handler's source was not available here). Registering "changes the resource's
  current capacity to a value that is inside of this range" (https://docs.aws.amazon.com/
  autoscaling/application/APIReference/API_RegisterScalableTarget.html): the template's
  MaxCapacity (ServiceMaxTasks) replaces 0 until the next night action. AWS documents the same
  reset for an Auto Scaling group ("CloudFormation always sets the min size, max size, and
  desired capacity ... to the values that are defined in the ... template",
  https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-autoscaling-scheduledaction.html),
  where UpdatePolicy AutoScalingScheduledAction can prevent it; no UpdatePolicy exists for a
  ScalableTarget (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-updatepolicy.html).
- The change set says which case a deploy is; a Modify whose details are all Dynamic is decided
  only while CloudFormation executes, so after the stack update the tool reads the target again
  and says what happened.

Keeping the cap: RegisterScalableTarget with the MinCapacity/MaxCapacity the night action set,
read before the deploy ("Any parameters that you don't specify are not changed by this update
request", API_RegisterScalableTarget.html). It runs after the deploy's verification (which needs
a task: tools/deploy/wake.py), also when that fails, and takes the service back to 0 tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks import names
from stacks.scaling import SCALE_DOWN_SCHEDULE, SCALE_UP_SCHEDULE, SCHEDULE_TIMEZONE, SCHEDULED_SCALING
from tools import stackwatch
from tools.deploy import verify, wake
from tools.deploy.changeset import ChangeSet
from tools.deploy.target import Aws, DeployError, aws_call, say

SCALABLE_TARGET = "AWS::ApplicationAutoScaling::ScalableTarget"
DIMENSION = "ecs:service:DesiredCount"
LIFTS, MAY_LIFT, KEEPS = "lifts", "may lift", "keeps"


@dataclass(frozen=True)
class NightCap:
    """The service's scalable target while the night action holds it (MaxCapacity 0)."""

    cluster: str
    service: str
    min_capacity: int
    max_capacity: int


def current(aws: Aws, stack_name: str) -> tuple[str, str, dict] | None:
    """(cluster, service, its scalable target) of the stack's ECS service, or None."""
    cfn = aws.client("cloudformation")
    tree = aws_call(lambda: stackwatch.stack_tree(cfn, stack_name), "list the stack's resources")
    ref = verify.find_service(tree)
    if ref is None:
        return None
    found = wake.scalable_target(aws, ref.cluster, ref.service)
    return (ref.cluster, ref.service, found) if found else None


def read(aws: Aws, stack_name: str) -> NightCap | None:
    """The night cap in effect now, or None (daytime, no service, no scalable target)."""
    found = current(aws, stack_name)
    if found is None or found[2].get("MaxCapacity") != 0:
        return None
    cluster, service, target = found
    return NightCap(cluster, service, int(target.get("MinCapacity", 0)), 0)


def effect(change_set: ChangeSet) -> tuple[str, stackwatch.Change | None]:
    """(LIFTS, MAY_LIFT or KEEPS, the ScalableTarget's change) for this change set."""
    changes = [c for c in change_set.changes if c.resource_type == SCALABLE_TARGET]
    if not changes:
        return KEEPS, None
    for change in changes:
        if (change.action in ("Add", "Remove") or change.replacement == "True"
                or "Static" in change.evaluations):
            return LIFTS, change
    return MAY_LIFT, changes[0]  # Dynamic details only (or none): decided while it executes


def schedule(values: dict[str, str], key: str) -> str:
    return f"{key} {values.get(key, '?')} {values.get(SCHEDULE_TIMEZONE, 'UTC')}"


def report(cap: NightCap | None, change_set: ChangeSet, values: dict[str, str], keep: bool,
           env: str) -> str | None:
    """Before the change set executes: say what it does to the night cap. Returns the effect
    (None in daytime)."""
    if cap is None:
        return None
    verdict, change = effect(change_set)
    night = (f"NIGHT CAP: the service's scalable target is at MinCapacity {cap.min_capacity}, "
             f"MaxCapacity 0 (what the night action of {SCHEDULED_SCALING} sets, "
             f"{schedule(values, SCALE_DOWN_SCHEDULE)}): no policy can start a task")
    say(night)
    until = (f"until the next night action ({schedule(values, SCALE_DOWN_SCHEDULE)})"
             if values.get(SCHEDULED_SCALING) == "true" else
             f"for good: this deploy sets {SCHEDULED_SCALING}="
             f"{values.get(SCHEDULED_SCALING, '?')}, so no night action comes")
    maximum = f"{names.SERVICE_MAX_TASKS}={values.get(names.SERVICE_MAX_TASKS, '?')}"
    if change is None:
        say("  this deploy KEEPS it: the change set does not touch the ScalableTarget, and "
            "CloudFormation updates only what changed; no task can start until "
            f"{schedule(values, SCALE_UP_SCHEDULE)}, so verifying the new task definition "
            "will fail (nothing verified). Deploy after the morning action to verify it.")
        return verdict
    what = f"{change.stack}/{change.logical_id} {change.action}" + (
        f" ({change.details})" if change.details else "")
    if change.action == "Remove":
        say(f"  this deploy LIFTS it: the change set removes {what}; the cap goes with the "
            "scalable target, and so does every scaling policy of the service.")
    elif verdict == LIFTS:
        say(f"  this deploy LIFTS it: the change set updates {what}; CloudFormation registers "
            f"the template's MinCapacity/MaxCapacity (MaxCapacity {maximum}) {until}. The "
            "wake and target-tracking policies can then start tasks tonight.")
    else:
        say(f"  this deploy MAY LIFT it: the change set lists {what} without a Static "
            "change (its values depend on resources CloudFormation resolves while it "
            f"executes); if it updates the target, MaxCapacity becomes {maximum} {until}. The "
            "deploy says which after the stack update.")
    if keep:
        say(f"  --keep-night-cap: after the deploy and its verification the tool registers "
            f"MinCapacity {cap.min_capacity}, MaxCapacity 0 again, which takes the service "
            "back to 0 tasks.")
    else:
        say(f"  to keep the cap instead: make deploy ENV={env} KEEP_NIGHT_CAP=1 (puts it back "
            "after the deploy); executing this change set by hand does not.")
    return verdict


def after(aws: Aws, cap: NightCap | None, stack_name: str, values: dict[str, str],
          keep: bool, quiet: bool = False) -> None:
    """After the deploy: say whether the night cap held, and with keep put it back. quiet
    (the deploy failed already): an error here is said, with the command, not raised."""
    if cap is None:
        return
    try:
        _after(aws, cap, stack_name, values, keep)
    except DeployError as error:
        if not quiet:
            raise
        say(f"WARNING: night cap not checked{' or put back' if keep else ''}: {error.message}")
        say("  by hand: aws application-autoscaling register-scalable-target --service-namespace "
            f"ecs --scalable-dimension {DIMENSION} --resource-id "
            f"{wake.resource_id(cap.cluster, cap.service)} --min-capacity {cap.min_capacity} "
            f"--max-capacity {cap.max_capacity}")


def _after(aws: Aws, cap: NightCap, stack_name: str, values: dict[str, str],
           keep: bool) -> None:
    found = current(aws, stack_name)
    if found is None:
        say("night cap: the stack has no scalable target for its service now")
        return
    cluster, service, target = found
    if target.get("MaxCapacity") == 0:
        say(f"night cap still in place: MaxCapacity 0 until "
            f"{schedule(values, SCALE_UP_SCHEDULE)}")
        return
    if not keep:
        say(f"night cap lifted: MinCapacity {target.get('MinCapacity')}, MaxCapacity "
            f"{target.get('MaxCapacity')} until the next night action "
            f"({schedule(values, SCALE_DOWN_SCHEDULE)})")
        return
    client = aws.client("application-autoscaling")
    aws_call(lambda: client.register_scalable_target(
        ServiceNamespace="ecs", ResourceId=wake.resource_id(cluster, service),
        ScalableDimension=DIMENSION, MinCapacity=cap.min_capacity,
        MaxCapacity=cap.max_capacity), "put the night cap back (RegisterScalableTarget)")
    say(f"night cap put back (--keep-night-cap): MinCapacity {cap.min_capacity}, MaxCapacity "
        f"{cap.max_capacity} on {wake.resource_id(cluster, service)} (was MaxCapacity "
        f"{target.get('MaxCapacity')}); the service goes back to 0 tasks until "
        f"{schedule(values, SCALE_UP_SCHEDULE)}")
