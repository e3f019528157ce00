"""Model-load budget: does each environment's grace period cover its model load?

The rule and its sources are in stacks/model_load.py. Per params/<env>.json, with the root
template's defaults for what the file leaves out:
    HealthCheckGracePeriodSeconds >= ModelLoadSeconds + Ollama check interval
                                     + HealthyThresholdCount x HealthCheckIntervalSeconds
and the Ollama check and StartTimeout that templates/service.json maps for ModelLoadSeconds
satisfy rules 1 and 2 (read from the template: that is what deploys). CloudFormation Rules
cannot compare numbers, so this runs before deploy, with the rollout check:

    python -m tools.rollout              (both checks, every environment)
    python -m tools.model_budget dev     (this check only)
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import dataclass

from stacks import model_load
from stacks.load_balancer import HEALTH_INTERVAL, HEALTHY_THRESHOLD
from stacks.service import GRACE_PERIOD
from tools import params
from tools.params import REPO

SERVICE_TEMPLATE = REPO / "templates" / "service.json"


@functools.cache
def _mapped_checks() -> dict[str, dict[str, int]]:
    return json.loads(SERVICE_TEMPLATE.read_text())["Mappings"][model_load.MAPPING]


@dataclass(frozen=True)
class Budget:
    env: str
    load_seconds: int
    grace: int
    alb_interval: int
    healthy_threshold: int

    @property
    def check(self) -> model_load.ContainerCheck:
        row = _mapped_checks()[str(self.load_seconds)]
        return model_load.ContainerCheck(
            start_period=row["OllamaCheckStartPeriod"], interval=row["OllamaCheckInterval"],
            retries=row["OllamaCheckRetries"], timeout=row["OllamaCheckTimeout"])

    @property
    def start_timeout(self) -> int:
        return _mapped_checks()[str(self.load_seconds)]["OllamaStartTimeout"]

    @property
    def needed_grace(self) -> int:
        return self.load_seconds + self.check.interval + self.healthy_threshold * self.alb_interval

    def problems(self) -> list[str]:
        where = f"params/{self.env}.json ({self.env})"
        check, load = self.check, self.load_seconds
        found = []
        if check.gives_up_after < load + check.interval:
            found.append(
                f"{where}: the Ollama check gives up after {check.start_period} + "
                f"{check.interval} x {check.retries} = {check.gives_up_after} s, before a "
                f"{load} s load plus one check ({load + check.interval} s). Fix: regenerate "
                "templates/ (make generate); stacks/model_load.py derives the check.")
        if self.start_timeout < check.gives_up_after:
            found.append(
                f"{where}: Ollama StartTimeout {self.start_timeout} s ends the gateway's "
                f"dependsOn HEALTHY wait before the check's verdict ({check.gives_up_after} s). "
                "Fix: regenerate templates/ (make generate).")
        if self.grace < self.needed_grace:
            found.append(
                f"{where}: {GRACE_PERIOD}={self.grace} is shorter than the model-load budget: "
                f"{model_load.MODEL_LOAD_SECONDS} {load} + Ollama check interval "
                f"{check.interval} + {HEALTHY_THRESHOLD} {self.healthy_threshold} x "
                f"{HEALTH_INTERVAL} {self.alb_interval} = {self.needed_grace} s; the service "
                "would stop tasks that are still loading. Fix: set "
                f"{GRACE_PERIOD}={self.needed_grace} (or more).")
        return found


def budget(env: str, values: dict[str, str] | None = None) -> Budget:
    merged = params.with_defaults(env, values)

    def number(key: str) -> int:
        return params.whole_number(env, merged, key)

    load = number(model_load.MODEL_LOAD_SECONDS)
    if str(load) not in _mapped_checks():
        raise params.ParamsError(
            f"params/{env}.json: {model_load.MODEL_LOAD_SECONDS}={load} is not a budget tier; "
            f"allowed: {', '.join(sorted(_mapped_checks(), key=int))} (round up)")
    return Budget(env=env, load_seconds=load, grace=number(GRACE_PERIOD),
                  alb_interval=number(HEALTH_INTERVAL),
                  healthy_threshold=number(HEALTHY_THRESHOLD))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("envs", nargs="*", metavar="ENV",
                        help="environments to check (default: every params/*.json)")
    args = parser.parse_args(argv)
    failures = 0
    print(f"{'env':<8} {'load s':>6} {'check':>13} {'gives up':>8} {'start t/o':>9} "
          f"{'ALB':>6} {'need':>5} {'grace':>5}  result")
    for env in args.envs or params.environments():
        try:
            b = budget(env)
        except params.ParamsError as error:
            print(f"{env:<8} error: {error}", file=sys.stderr)
            failures += 1
            continue
        problems = b.problems()
        c = b.check
        print(f"{env:<8} {b.load_seconds:>6} {f'{c.start_period}+{c.interval}x{c.retries}':>13} "
              f"{c.gives_up_after:>8} {b.start_timeout:>9} "
              f"{f'{b.healthy_threshold}x{b.alb_interval}':>6} {b.needed_grace:>5} "
              f"{b.grace:>5}  {'ok' if not problems else 'FAIL'}")
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        failures += bool(problems)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
