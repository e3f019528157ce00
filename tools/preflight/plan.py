"""Checks of the deploy's own numbers, before any AWS call: the same rules `make rollout-check`
applies to the committed params files (tools/rollout.py, tools/model_budget.py), applied to the
values this deploy will use (params file plus --parameter overrides)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools import model_budget, params, rollout
from tools.preflight.core import Context, Result, failed, ok


def _rule(ctx: Context, name: str, needed: str, read: Callable[[str, dict], Any],
          summary: Callable[[Any], str]) -> Result:
    """A params rule as a check: read the values, then ok or its first problem (and the rest)."""
    try:
        checked = read(ctx.env, ctx.values)
    except params.ParamsError as error:
        return failed(name, str(error), needed, f"fix params/{ctx.env}.json")
    problems = checked.problems()
    if problems:
        return failed(name, problems[0], needed, *problems[1:])
    return ok(name, summary(checked), needed)


def check_rollout_room(ctx: Context, name: str) -> Result:
    return _rule(ctx, name, "a rolling deploy at the service maximum fits the Auto Scaling "
                 "group (tools/rollout.py)", rollout.sizing,
                 lambda s: f"{s.max_tasks} task(s) x {s.max_percent} % needs "
                           f"{s.needed_instances} {s.instance_type}; AsgMaxSize {s.asg_max}")


def check_model_load_budget(ctx: Context, name: str) -> Result:
    return _rule(ctx, name, "the health check grace period covers the model load, one Ollama "
                 "check and the ALB's healthy threshold (tools/model_budget.py)",
                 model_budget.budget,
                 lambda b: f"load {b.load_seconds} s, grace {b.grace} s >= {b.needed_grace} s")


CHECKS = (
    ("rollout room (tasks x maximum percent fit AsgMaxSize)", check_rollout_room),
    ("model-load budget (grace period)", check_model_load_budget),
)
