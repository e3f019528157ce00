"""Rollout math: can each environment's cluster hold a rolling deploy at the service's maximum?

One task takes one GPU. During a rolling deployment ECS runs up to
floor(D * P / 100) tasks (D: tasks, P: DeploymentMaximumPercent), so the Auto Scaling group must
be able to grow to ceil(D * P / 100 / G) instances (G: GPUs per instance). D is the service's
autoscaling maximum (ServiceMaxTasks): a deploy can start at any size. A minimum healthy
percent below 100 means the deploy stops tasks before their replacements serve: downtime.

    python -m tools.rollout            check every params/<env>.json
    python -m tools.rollout dev prod   check those environments

Exits 1 and names the environment, the numbers and the fix when a deploy would deadlock. It
then runs the model-load budget check (tools/model_budget.py) over the same environments.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

from stacks import names
from stacks.gpu import GPUS_PER_INSTANCE
from tools import model_budget, params


@dataclass(frozen=True)
class Sizing:
    env: str
    instance_type: str
    asg_max: int
    max_tasks: int
    min_tasks: int
    max_percent: int
    min_healthy_percent: int

    @property
    def gpus_per_instance(self) -> int:
        return GPUS_PER_INSTANCE[self.instance_type]

    @property
    def deploy_tasks(self) -> int:
        """Tasks running at the peak of a rolling deploy at the service maximum."""
        return self.max_tasks * self.max_percent // 100

    @property
    def needed_instances(self) -> int:
        return math.ceil(self.max_tasks * self.max_percent / 100 / self.gpus_per_instance)

    def problems(self) -> list[str]:
        where = f"params/{self.env}.json ({self.env})"
        found = []
        if self.min_tasks > self.max_tasks:
            found.append(f"{where}: {names.SERVICE_MIN_TASKS}={self.min_tasks} is above "
                         f"{names.SERVICE_MAX_TASKS}={self.max_tasks}. Fix: lower the minimum "
                         "or raise the maximum.")
        if self.min_healthy_percent < 100:
            found.append(
                f"{where}: {names.DEPLOYMENT_MIN_HEALTHY_PERCENT}={self.min_healthy_percent} "
                "lets a deploy stop serving tasks before their replacements are healthy: "
                "downtime. Fix: set it to 100 and give the cluster room for the extra tasks.")
        if self.deploy_tasks <= self.max_tasks:
            found.append(
                f"{where}: {names.DEPLOYMENT_MAX_PERCENT}={self.max_percent} at "
                f"{self.max_tasks} task(s) allows no extra task during a deploy "
                f"(floor({self.max_tasks} x {self.max_percent} / 100) = {self.deploy_tasks}), "
                "so with minimum healthy 100 % the deploy cannot start a replacement. Fix: "
                f"raise {names.DEPLOYMENT_MAX_PERCENT} to at least "
                f"{math.ceil((self.max_tasks + 1) * 100 / self.max_tasks)}.")
        if self.needed_instances > self.asg_max:
            fit = self.asg_max * self.gpus_per_instance * 100 // self.max_tasks
            lower = (f", or lower {names.DEPLOYMENT_MAX_PERCENT} to {fit}"
                     if self.max_tasks * fit // 100 > self.max_tasks else "")
            found.append(
                f"{where}: a rolling deploy at {self.max_tasks} task(s) x {self.max_percent} % "
                f"needs ceil({self.max_tasks} x {self.max_percent} / 100 / "
                f"{self.gpus_per_instance}) = {self.needed_instances} {self.instance_type} "
                f"instance(s) ({self.gpus_per_instance} GPU each), but "
                f"{names.ASG_MAX_SIZE} is {self.asg_max}; the new tasks would wait in "
                f"PROVISIONING. Fix: raise {names.ASG_MAX_SIZE} to {self.needed_instances}"
                f"{lower}.")
        return found


def sizing(env: str, values: dict[str, str] | None = None) -> Sizing:
    merged = params.with_defaults(env, values)

    def number(key: str) -> int:
        return params.whole_number(env, merged, key)

    instance_type = merged.get(names.INSTANCE_TYPE, "")
    if instance_type not in GPUS_PER_INSTANCE:
        raise params.ParamsError(
            f"params/{env}.json: {names.INSTANCE_TYPE}={instance_type!r} has no known GPU count; "
            f"allowed: {', '.join(sorted(GPUS_PER_INSTANCE))}")
    return Sizing(
        env=env, instance_type=instance_type, asg_max=number(names.ASG_MAX_SIZE),
        max_tasks=number(names.SERVICE_MAX_TASKS), min_tasks=number(names.SERVICE_MIN_TASKS),
        max_percent=number(names.DEPLOYMENT_MAX_PERCENT),
        min_healthy_percent=number(names.DEPLOYMENT_MIN_HEALTHY_PERCENT),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("envs", nargs="*", metavar="ENV",
                        help="environments to check (default: every params/*.json)")
    args = parser.parse_args(argv)
    envs = args.envs or params.environments()
    failures = 0
    print(f"{'env':<8} {'type':<14} {'GPUs':>4} {'max tasks':>9} {'max %':>5} "
          f"{'min %':>5} {'need':>4} {'ASG max':>7}  result")
    for env in envs:
        try:
            s = sizing(env)
        except params.ParamsError as error:
            print(f"{env:<8} error: {error}", file=sys.stderr)
            failures += 1
            continue
        problems = s.problems()
        print(f"{env:<8} {s.instance_type:<14} {s.gpus_per_instance:>4} {s.max_tasks:>9} "
              f"{s.max_percent:>5} {s.min_healthy_percent:>5} {s.needed_instances:>4} "
              f"{s.asg_max:>7}  {'ok' if not problems else 'FAIL'}")
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        failures += bool(problems)
    # The sibling check of the same params files: does the grace period cover the model load?

    print()
    failures += model_budget.main(envs)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
