"""Preflight's offline checks: the deploy's own values against the rollout and load rules."""

from __future__ import annotations

import pytest

from tests.tools.preflight_support import context, run, title_of
from tools.preflight import plan
from tools.preflight.core import Status

# The figures below are for a 600 s load budget checked every 15 s (dev's own are smaller).
MODEL_LOAD_600 = {"ModelLoadSeconds": "600", "HealthCheckIntervalSeconds": "15",
                  "HealthCheckTimeoutSeconds": "5"}


@pytest.mark.parametrize("check, overrides, status, fragment", [
    (plan.check_rollout_room, {}, Status.OK, "AsgMaxSize 2"),
    (plan.check_rollout_room, {"ServiceMaxTasks": "4"}, Status.FAILED, "raise AsgMaxSize to 8"),
    (plan.check_rollout_room, {"DeploymentMinimumHealthyPercent": "50"}, Status.FAILED,
     "downtime"),
    (plan.check_rollout_room, {"AsgMaxSize": "two"}, Status.FAILED, "not a whole number"),
    (plan.check_model_load_budget, MODEL_LOAD_600, Status.OK, "grace 900 s >= 665 s"),
    (plan.check_model_load_budget, MODEL_LOAD_600 | {"HealthCheckGracePeriodSeconds": "600"},
     Status.FAILED, "HealthCheckGracePeriodSeconds=665"),
    (plan.check_model_load_budget, {"ModelLoadSeconds": "700"}, Status.FAILED,
     "not a budget tier"),
])
def test_plan_checks_use_the_values_this_deploy_will_use(stubs, check, overrides, status,
                                                         fragment):
    result = run(context(stubs, **overrides), title_of(check))
    assert result.status is status, result.lines()
    assert fragment in "\n".join(result.lines())
