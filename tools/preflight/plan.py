"""Checks of the deploy's own numbers, before any AWS call: the same rules `make rollout-check`
applies to the committed params files (tools/rollout.py, tools/model_budget.py), applied to the
values this deploy will use (params file plus --parameter overrides)."""

from __future__ import annotations

from tools import model_budget, params, rollout
from tools.preflight.core import Context, Result, failed, ok


def check_rollout_room(ctx: Context, name: str) -> Result:
    needed = ("a rolling deploy at the service maximum fits the Auto Scaling group "
              "(tools/rollout.py)")
    try:
        sizing = rollout.sizing(ctx.env, ctx.values)
    except params.ParamsError as error:
        return failed(name, str(error), needed, f"fix params/{ctx.env}.json")
    problems = sizing.problems()
    if problems:
        return failed(name, problems[0], needed, *problems[1:])
    return ok(name, f"{sizing.max_tasks} task(s) x {sizing.max_percent} % needs "
                    f"{sizing.needed_instances} {sizing.instance_type}; AsgMaxSize {sizing.asg_max}",
              needed)


def check_model_load_budget(ctx: Context, name: str) -> Result:
    needed = ("the health check grace period covers the model load, one Ollama check and the "
              "ALB's healthy threshold (tools/model_budget.py)")
    try:
        budget = model_budget.budget(ctx.env, ctx.values)
    except params.ParamsError as error:
        return failed(name, str(error), needed, f"fix params/{ctx.env}.json")
    problems = budget.problems()
    if problems:
        return failed(name, problems[0], needed, *problems[1:])
    return ok(name, f"load {budget.load_seconds} s, grace {budget.grace} s >= "
                    f"{budget.needed_grace} s", needed)


CHECKS = (
    ("rollout room (tasks x maximum percent fit AsgMaxSize)", check_rollout_room),
    ("model-load budget (grace period)", check_model_load_budget),
)
