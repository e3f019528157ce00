"""The model-load budget: one rule from which every health-check number around a model load follows.

L = ModelLoadSeconds, per environment: from the task's start until Ollama has the model in GPU
memory (image pull on a fresh instance + Ollama start + load). A bigger model raises L in its
own params file; everything below follows from it.

1. The Ollama container check must not give up while the model loads within L. Docker counts no
   failure during StartPeriod and then declares UNHEALTHY after Retries consecutive failures,
   one every Interval, so it gives up at StartPeriod + Interval x Retries; ECS bounds StartPeriod
   to 0-300, Interval to 5-300 and Retries to 1-10
   (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_HealthCheck.html):
       StartPeriod + Interval x Retries >= L + Interval
   (the extra Interval: the first check that sees the loaded model comes up to one Interval
   after the load).
2. The gateway starts only when Ollama is HEALTHY (dependsOn HEALTHY). The ECS agent gives up
   that wait only if the DEPENDENCY container (ollama) has a startTimeout, measured from its
   start (aws/amazon-ecs-agent@8dfceca6 agent/engine/dependencygraph/graph.go,
   hasDependencyTimedOut: dependOnContainer.GetStartTimeout() <= 0 -> never times out).
   ECS_CONTAINER_START_TIMEOUT is another timer: the Docker StartContainer call
   (agent/engine/docker_task_engine.go, client.StartContainer(..., cfg.ContainerStartTimeout)),
   which the task definition docs call "enforced independently"; the docs' older wording made
   it the default of the dependency wait. An explicit Ollama StartTimeout makes both readings
   agree: the wait ends when the container check itself would declare Ollama UNHEALTHY:
       StartTimeout = StartPeriod + Interval x Retries + Timeout   (> L + Interval)
   (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html,
   startTimeout). A load stuck past the budget then stops the task instead of hanging it.
3. The service scheduler ignores failing load balancer and container health checks for
   HealthCheckGracePeriodSeconds after a task starts
   (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateService.html,
   healthCheckGracePeriodSeconds). The target turns healthy after HealthyThresholdCount
   consecutive passing checks, one every HealthCheckIntervalSeconds
   (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html),
   and /readyz passes once the gateway is up beside a loaded model:
       grace >= L + Interval + HealthyThresholdCount x HealthCheckIntervalSeconds

CloudFormation has no arithmetic, so the template cannot compute 1 and 2 from a parameter:
ModelLoadSeconds takes one of LOAD_TIERS, and a Mapping generated from container_check() gives
the Ollama check and StartTimeout for each. Rules cannot compare numbers either (the Rules
functions are Fn::And/Contains/EachMemberEquals/EachMemberIn/Equals/Not/Or/RefAll/ValueOf/
ValueOfAll), so rule 3 (it also reads the load balancer's parameters) is checked per params file
before deploy by tools/model_budget.py, run with the rollout check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# ECS container health check bounds (API_HealthCheck).
START_PERIOD_MAX = 300
INTERVAL_MIN, INTERVAL_MAX = 5, 300
RETRIES_MIN, RETRIES_MAX = 1, 10
# Our choices: check as often as the bounds and rule 1 allow (`ollama ps` is one local HTTP
# call): the first check that sees the loaded model comes up to one interval after the load,
# and a wake waits for it (stacks/wake.py). ECS has no field for Docker's start interval, and
# Docker 25, the ECS AL2023 AMI's (aws/amazon-ecs-ami@a2532d35 release-al2023.auto.pkrvars.hcl,
# docker_version_al2023 25.0.16), then probes at Interval during the start period too: the 5 s
# default start interval came with 27.x (moby/moby@c5149527 daemon/health.go, monitor).
# Never give up after fewer than 3 failures (one slow check must not restart a serving task);
# 10 s per check.
BASE_INTERVAL = INTERVAL_MIN
FEWEST_RETRIES = 3
CHECK_TIMEOUT = 10

# The load budgets an environment may choose (seconds). The largest the ECS bounds allow is
# 300 + 300 x 10 - 300 = 3000.
LOAD_TIERS = (300, 600, 900, 1200, 1800, 2700)
DEFAULT_LOAD_SECONDS = 600

MAPPING = "ModelLoadBudget"
MODEL_LOAD_SECONDS = "ModelLoadSeconds"


class BudgetError(ValueError):
    """No container check within the ECS bounds covers the load time."""


@dataclass(frozen=True)
class ContainerCheck:
    start_period: int
    interval: int
    retries: int
    timeout: int

    @property
    def gives_up_after(self) -> int:
        """Seconds after the container starts at which Docker declares it UNHEALTHY."""
        return self.start_period + self.interval * self.retries

    @property
    def start_timeout(self) -> int:
        """The Ollama StartTimeout: the gateway's HEALTHY wait ends with the check's verdict."""
        return self.gives_up_after + self.timeout


def container_check(load_seconds: int) -> ContainerCheck:
    """The Ollama health check for a load budget: rule 1 with the shortest interval that fits."""
    start = START_PERIOD_MAX
    interval = BASE_INTERVAL
    retries = max(FEWEST_RETRIES, math.ceil((load_seconds - start) / interval) + 1)
    if retries > RETRIES_MAX:
        retries = RETRIES_MAX
        interval = 5 * math.ceil((load_seconds - start) / (retries - 1) / 5)
    if interval > INTERVAL_MAX:
        raise BudgetError(
            f"{MODEL_LOAD_SECONDS}={load_seconds}: no Ollama health check within the ECS bounds "
            f"(start period <= {START_PERIOD_MAX}, interval <= {INTERVAL_MAX}, retries <= "
            f"{RETRIES_MAX}) waits that long")
    check = ContainerCheck(start, interval, retries, CHECK_TIMEOUT)
    assert check.gives_up_after >= load_seconds + interval  # rule 1, by construction
    return check


def minimum_grace(load_seconds: int, alb_interval: int, healthy_threshold: int) -> int:
    """Rule 3: the smallest HealthCheckGracePeriodSeconds for a load budget."""
    return load_seconds + container_check(load_seconds).interval + healthy_threshold * alb_interval


def mapping() -> dict[str, dict[str, int]]:
    """The template Mapping: load tier -> Ollama check numbers and StartTimeout."""
    rows = {}
    for load in LOAD_TIERS:
        check = container_check(load)
        rows[str(load)] = {
            "OllamaCheckStartPeriod": check.start_period,
            "OllamaCheckInterval": check.interval,
            "OllamaCheckRetries": check.retries,
            "OllamaCheckTimeout": check.timeout,
            "OllamaStartTimeout": check.start_timeout,
        }
    return rows
