"""How long a task takes from "needed" to "serving", part by part: the wake budget.

A wake from zero tasks (scale-to-zero) and a scale-out onto a new instance run through the same
parts; only the first starts with the wake alarm, the second with managed scaling. budget()
states them for one environment's parameter values, each with its source, and
tools/deploy/wakecheck.py (`make wake-check`) measures the same parts (Part.measured names the
interval between two of its marks). A part marked "allowance" has no published AWS figure: it
is our estimate, and wake-check is its test. WAKE_TARGET_SECONDS is the designed upper bound
of a wake in an environment with the warm pool on (SageMaker publishes 258 s for a scale-out
with container caching); tests/stacks/test_wake_budget.py sums the parts per params file.

The alarms around a start follow from the same parts:
- the capacity alarm (stacks/monitoring.py) pages on tasks waiting for an instance
  (PROVISIONING) for longer than one managed-scaling step takes, cold: capacity_seconds();
- the pending alarm pages on tasks that have an instance but are not RUNNING for longer than a
  cold image pull plus the Ollama start timeout: pending_seconds();
- capacity_steps() checks that one step of CapacityStepInstances covers a deploy surge and a
  full scale-out, so one step is all these waits have to allow for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from stacks import model_load
from stacks.gpu import GPUS_PER_INSTANCE

WAKE_TARGET_SECONDS = 240
MAPPING = "WakeBudget"
PENDING_MARGIN_MINUTES = 2

ALB_METRICS = "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html"
ALARMS = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html"
CLUSTER_AUTO_SCALING = "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-auto-scaling.html"
MANAGED_SCALING = "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ManagedScaling.html"
# AWS's own warm-pool lab: "Launching a new EC2 instance from warm pool: ... Duration: 36s" (a
# t3.micro whose user data completes a launch hook, as ours does).
WARM_POOL_LAB = ("awslabs/ec2-spot-workshops@0862a2fa content/efficient-and-resilient-ec2-auto-"
                 "scaling/lab1/91-launch-from-warm-pool.md")
TARGET_HEALTH = "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html"
GP3 = "https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html"

ALB_PERIOD_SECONDS = 60  # "measures and sends its metrics in 60-second intervals"
ALARM_EVALUATION_SECONDS = 60  # "an alarm is evaluated every minute"
WAKE_ALARM_SECONDS = ALB_PERIOD_SECONDS + ALARM_EVALUATION_SECONDS
ACTION_SECONDS = 5  # allowance: the alarm invokes its Auto Scaling actions
CAPACITY_SCALE_OUT_SECONDS = 120  # allowance: managed scaling's own CloudWatch cycle
WARM_START_MEASURED_SECONDS = 36  # WARM_POOL_LAB
WARM_START_SECONDS = WARM_START_MEASURED_SECONDS + 14  # + allowance: the GPU AMI's boot
INSTANCE_LAUNCH_SECONDS = 300  # = ManagedScaling InstanceWarmupPeriod (stacks/cluster.py)
AGENT_REGISTER_SECONDS = 5  # allowance
PLACEMENT_SECONDS = 10  # allowance
CACHED_PULL_SECONDS = 3  # allowance: prefer-cached finds both images on disk
COLD_PULL_SECONDS = 240  # allowance: both images, several GB, from ECR
CONTAINER_START_SECONDS = 3  # allowance
OLLAMA_START_SECONDS = 5  # allowance: Ollama's server and runner start, GPU initialisation
GATEWAY_START_SECONDS = 3  # allowance
TARGET_REGISTER_SECONDS = 3  # allowance

# The model blob Ollama reads at load: "Llama 3.2 | 1B | 1.3GB | ollama run llama3.2:1b" and
# "| 3B | 2.0GB | ollama run llama3.2" (ollama/ollama@64424503 README.md), in MiB.
MODEL_SIZES_MIB = {"llama3.2:1b": 1240, "llama3.2": 1908, "llama3.2:3b": 1908}


class BudgetError(ValueError):
    """The budget cannot be stated for these parameter values; the message says what to add."""


@dataclass(frozen=True)
class Part:
    measured: str  # the interval of tools/deploy/wakecheck.py that measures it (MEASURED)
    label: str
    seconds: float
    source: str


# Measured intervals, in order: (key, from mark, to mark), marks of tools/deploy/wakecheck.py.
MEASURED = (
    ("alarm", "request", "alarm"),
    ("instance_requested", "alarm", "launch_start"),
    ("instance_start", "launch_start", "launch_end"),
    ("registered", "launch_end", "registered"),
    ("placed", "registered", "pull_start"),
    ("pulled", "pull_start", "pull_end"),
    ("running", "pull_end", "running"),
    ("healthy", "running", "healthy"),
)


def _flag(values: Mapping[str, str], name: str) -> bool:
    return str(values[name]).lower() == "true"


def warm_pool_on(values: Mapping[str, str]) -> bool:
    return (_flag(values, "WarmPoolEnabled") and int(values["WarmPoolMinSize"]) >= 1
            and not _flag(values, "SpotInstances"))


def model_size_mib(model: str) -> int:
    if model not in MODEL_SIZES_MIB:
        raise BudgetError(f"ModelName={model}: no size known for it; add it to "
                          "stacks/wake.py MODEL_SIZES_MIB (MiB of the model blob, with the "
                          "page that states it)")
    return MODEL_SIZES_MIB[model]


def budget(values: Mapping[str, str]) -> list[Part]:
    """The parts of a start for these parameter values (a params file over the defaults)."""
    check = model_load.container_check(int(values[model_load.MODEL_LOAD_SECONDS]))
    size, throughput = model_size_mib(values["ModelName"]), int(values["RootVolumeThroughputMiBps"])
    interval, threshold = (int(values["HealthCheckIntervalSeconds"]),
                           int(values["HealthyThresholdCount"]))
    warm = warm_pool_on(values)
    if _flag(values, "ScaleToZero"):
        parts = [
            Part("alarm", "the request's minute closes: the load balancer sends its metrics in "
                 "60-second intervals", ALB_PERIOD_SECONDS, ALB_METRICS),
            Part("alarm", "WakeAlarm breaches at its next evaluation (every minute)",
                 ALARM_EVALUATION_SECONDS, ALARMS + ", Evaluating an alarm"),
            Part("instance_requested", "the same alarm sets the GPU group to 1 instance "
                 "(InstanceWakeScaling) and the service to 1 task", ACTION_SECONDS, "allowance"),
        ]
    else:
        parts = [Part("instance_requested", "managed scaling: CapacityProviderReservation over "
                      "its target raises the group (collected every minute)",
                      CAPACITY_SCALE_OUT_SECONDS, CLUSTER_AUTO_SCALING + "; allowance")]
    if warm:
        parts.append(Part("instance_start", "a warm-pool instance starts, boots and completes its "
                          "launch hook", WARM_START_SECONDS,
                          f"{WARM_START_MEASURED_SECONDS} s measured: {WARM_POOL_LAB}; + "
                          "allowance for the GPU AMI"))
    else:
        parts.append(Part("instance_start", "an instance launches and boots from the AMI (no "
                          "warm pool)", INSTANCE_LAUNCH_SECONDS,
                          "InstanceWarmupPeriod, " + MANAGED_SCALING))
    parts += [
        Part("registered", "the ECS agent starts and registers the instance",
             AGENT_REGISTER_SECONDS, "allowance"),
        Part("placed", "ECS places the waiting task; the agent starts it", PLACEMENT_SECONDS,
             "allowance"),
        Part("pulled", "image pull: both images on disk (warm-up pull)" if warm else
             "image pull: both images from ECR", CACHED_PULL_SECONDS if warm else COLD_PULL_SECONDS,
             "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached (stacks/boot.py); allowance"),
        Part("running", "containers start", CONTAINER_START_SECONDS, "allowance"),
        Part("running", f"model read: {size} MiB ({values['ModelName']}) at {throughput} MiB/s "
             "(RootVolumeThroughputMiBps)", round(size / throughput, 1),
             f"size: ollama/ollama@64424503 README.md; gp3 throughput: {GP3}"),
        Part("running", "Ollama starts and loads the model onto the GPU", OLLAMA_START_SECONDS,
             "allowance"),
        Part("running", f"first passing Ollama check (every {check.interval} s at "
             f"ModelLoadSeconds={values[model_load.MODEL_LOAD_SECONDS]})", check.interval,
             "stacks/model_load.py"),
        Part("running", "the gateway starts (dependsOn HEALTHY)", GATEWAY_START_SECONDS,
             "allowance"),
        Part("healthy", "ECS registers the task in the target group", TARGET_REGISTER_SECONDS,
             "allowance"),
        Part("healthy", f"{threshold} passing load balancer checks, every {interval} s",
             threshold * interval, TARGET_HEALTH),
    ]
    return parts


def total(parts: list[Part]) -> int:
    return math.ceil(sum(part.seconds for part in parts))


def wake_seconds(values: Mapping[str, str]) -> int:
    """The designed time from the request (or the scale-out) to a healthy target."""
    return total(budget(values))


def capacity_seconds() -> int:
    """Longest an ordinary start keeps a task PROVISIONING: one cold managed-scaling step."""
    return (CAPACITY_SCALE_OUT_SECONDS + INSTANCE_LAUNCH_SECONDS + AGENT_REGISTER_SECONDS
            + PLACEMENT_SECONDS)


def capacity_alarm_minutes() -> int:
    return math.ceil(capacity_seconds() / 60) + PENDING_MARGIN_MINUTES


def pending_seconds(load_seconds: int) -> int:
    """Longest a task with an instance stays PENDING: a cold pull, then the Ollama wait."""
    check = model_load.container_check(load_seconds)
    return COLD_PULL_SECONDS + check.start_timeout + GATEWAY_START_SECONDS


def pending_alarm_minutes(load_seconds: int) -> int:
    """Evaluation periods (60 s each) of the pending-task alarm for a load budget."""
    return math.ceil(pending_seconds(load_seconds) / 60) + PENDING_MARGIN_MINUTES


def mapping() -> dict[str, dict[str, int]]:
    """Template Mapping: load tier -> pending-alarm minutes (CloudFormation has no arithmetic)."""
    return {str(load): {"PendingAlarmMinutes": pending_alarm_minutes(load)}
            for load in model_load.LOAD_TIERS}


@dataclass(frozen=True)
class Steps:
    what: str
    instances: int  # instances the event needs beyond what runs before it
    step: int

    @property
    def steps(self) -> int:
        return math.ceil(self.instances / self.step) if self.instances else 0


def capacity_steps(values: Mapping[str, str]) -> list[Steps]:
    """Managed-scaling steps a deploy surge and a full scale-out take at CapacityStepInstances.

    With more than one AZ ECS adds exactly the minimum step size per step and the next step
    waits for InstanceWarmupPeriod (MANAGED_SCALING; CLUSTER_AUTO_SCALING, "The second
    scale-out step needs to wait until the instanceWarmupPeriod expires"). One task needs one
    GPU (stacks/service.py). A deploy at DeploymentMaximumPercent runs up to
    ceil(tasks x percent / 100) tasks (tools/rollout.py).
    """
    gpus = GPUS_PER_INSTANCE[values["InstanceType"]]
    instances = lambda tasks: math.ceil(tasks / gpus)  # noqa: E731
    step = int(values["CapacityStepInstances"])
    low = 0 if _flag(values, "ScaleToZero") else int(values["ServiceMinTasks"])
    high = int(values["ServiceMaxTasks"])
    surge = math.ceil(high * int(values["DeploymentMaximumPercent"]) / 100)
    return [
        Steps(f"full scale-out, {low} -> {high} tasks", instances(high) - instances(low), step),
        Steps(f"deploy surge at {high} tasks, {surge} tasks while it runs",
              instances(surge) - instances(high), step),
    ]
