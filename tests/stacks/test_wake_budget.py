"""The wake budget (stacks/wake.py) per params file, and the capacity-step arithmetic.

Every figure is derived: the parts from each environment's values over the root template's
defaults, the steps from the rendered capacity provider and stacks/gpu.py."""

from __future__ import annotations

import math

import pytest

from stacks import boot, model_load, wake
from stacks.gpu import GPUS_PER_INSTANCE
from tests.cfn import props, rendered
from tools import params


def values(env: str, **overrides: str) -> dict[str, str]:
    return params.with_defaults(env) | overrides


@pytest.mark.parametrize("env", params.environments())
def test_every_part_has_a_source_and_a_measured_interval(env):
    parts = wake.budget(values(env))
    measured = [key for key, _, _ in wake.MEASURED]
    assert parts and all(p.source and p.label and p.seconds > 0 for p in parts)
    assert all(p.measured in measured for p in parts)
    # in the order wake-check measures them
    assert [p.measured for p in parts] == sorted((p.measured for p in parts), key=measured.index)
    assert wake.total(parts) == math.ceil(sum(p.seconds for p in parts))


def test_a_wake_in_dev_is_designed_within_the_target_with_the_warm_pool_on():
    dev = values("dev")
    assert dev["ScaleToZero"] == "true" and wake.warm_pool_on(dev)
    total = wake.wake_seconds(dev)
    assert total <= wake.WAKE_TARGET_SECONDS, wake.budget(dev)


def test_without_the_warm_pool_dev_misses_the_target():
    """What the warm pool buys: the launch, the boot and the pull."""
    cold = values("dev", WarmPoolEnabled="false")
    assert wake.wake_seconds(cold) > wake.WAKE_TARGET_SECONDS
    saved = wake.wake_seconds(cold) - wake.wake_seconds(values("dev"))
    assert saved >= (wake.INSTANCE_LAUNCH_SECONDS - wake.WARM_START_SECONDS
                     + wake.COLD_PULL_SECONDS - wake.CACHED_PULL_SECONDS) - 1


@pytest.mark.parametrize("env", params.environments())
def test_the_model_read_follows_the_model_size_and_the_volume_throughput(env):
    base = values(env)
    read = lambda v: next(p.seconds for p in wake.budget(v) if p.label.startswith("model read"))  # noqa: E731
    size = wake.model_size_mib(base["ModelName"])
    throughput = int(base["RootVolumeThroughputMiBps"])
    assert read(base) == pytest.approx(size / throughput, abs=0.05)
    doubled = values(env, RootVolumeThroughputMiBps=str(2 * throughput))
    assert read(doubled) == pytest.approx(read(base) / 2, abs=0.05)


@pytest.mark.parametrize("env", params.environments())
def test_the_first_ollama_check_comes_one_check_interval_after_the_load(env):
    base = values(env)
    check = model_load.container_check(int(base[model_load.MODEL_LOAD_SECONDS]))
    part = next(p for p in wake.budget(base) if p.label.startswith("first passing Ollama check"))
    assert part.seconds == check.interval


@pytest.mark.parametrize("env", params.environments())
def test_the_load_balancer_part_is_its_healthy_threshold_of_checks(env):
    base = values(env)
    part = next(p for p in wake.budget(base) if "passing load balancer checks" in p.label)
    assert part.seconds == int(base["HealthyThresholdCount"]) * int(base["HealthCheckIntervalSeconds"])


def test_a_wake_from_zero_starts_with_the_alarm_a_scale_out_with_managed_scaling():
    wake_parts = wake.budget(values("dev"))
    scale_out = wake.budget(values("dev", ScaleToZero="false"))
    assert sum(p.seconds for p in wake_parts if p.measured == "alarm") == wake.WAKE_ALARM_SECONDS
    assert not [p for p in scale_out if p.measured == "alarm"]
    (requested,) = [p for p in scale_out if p.measured == "instance_requested"]
    assert requested.seconds == wake.CAPACITY_SCALE_OUT_SECONDS


def test_an_unknown_model_names_the_table_to_extend():
    with pytest.raises(wake.BudgetError, match="MODEL_SIZES_MIB"):
        wake.budget(values("dev", ModelName="mistral:7b"))


def test_the_budgets_instance_start_is_the_capacity_providers_warmup():
    provider = props(rendered("prod")["cluster.json"]["Resources"]["CapacityProvider"])
    scaling = provider["AutoScalingGroupProvider"]["ManagedScaling"]
    assert scaling["InstanceWarmupPeriod"] == wake.INSTANCE_LAUNCH_SECONDS


def test_the_launch_hook_waits_longer_than_a_cold_pull():
    hook = props(rendered("dev")["cluster.json"]["Resources"]["WarmUpHook"])
    assert hook["HeartbeatTimeout"] == boot.WARM_UP_TIMEOUT_SECONDS > wake.COLD_PULL_SECONDS


# -- capacity steps (API_ManagedScaling: with more than one AZ, exactly the minimum step) -------


@pytest.mark.parametrize("env", params.environments())
def test_one_managed_scaling_step_covers_a_deploy_surge_and_a_full_scale_out(env):
    """Derived from the rendered capacity provider and group, and stacks/gpu.py: the group spans
    more than one AZ, so each step adds exactly MinimumScalingStepSize instances and the next
    waits InstanceWarmupPeriod; every wait and alarm here allows for one step."""
    cluster = rendered(env)["cluster.json"]["Resources"]
    scaling = props(cluster["CapacityProvider"])["AutoScalingGroupProvider"]["ManagedScaling"]
    group = props(cluster["AutoScalingGroup"])
    assert len(group["AvailabilityZones"]) > 1  # the exact-step case of API_ManagedScaling
    step = int(scaling["MinimumScalingStepSize"])
    v = values(env)
    gpus = GPUS_PER_INSTANCE[v["InstanceType"]]
    low = 0 if v["ScaleToZero"] == "true" else int(v["ServiceMinTasks"])
    high = int(v["ServiceMaxTasks"])
    surge = math.ceil(high * int(v["DeploymentMaximumPercent"]) / 100)
    needs = {"full scale-out": math.ceil(high / gpus) - math.ceil(low / gpus),
             "deploy surge": math.ceil(surge / gpus) - math.ceil(high / gpus)}
    for what, instances in needs.items():
        assert math.ceil(instances / step) <= 1, (env, what, instances, step)
    assert [s.instances for s in wake.capacity_steps(v)] == list(needs.values())
    assert all(s.steps <= 1 and s.step == step for s in wake.capacity_steps(v))
    assert int(group["MaxSize"]) >= math.ceil(surge / gpus)  # the surge fits the group


def test_prod_needs_more_than_one_instance_per_step():
    """prod: 4 tasks at 200 % run 8 during a deploy, 4 more instances at one GPU each; at the
    old fixed step of 1 that took 4 steps of InstanceWarmupPeriod each."""
    v = values("prod")
    surge = next(s for s in wake.capacity_steps(v) if s.what.startswith("deploy surge"))
    assert surge.instances > 1 and math.ceil(surge.instances / 1) > 1
    assert surge.steps == 1
