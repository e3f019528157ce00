"""Text for people: the per-environment table, the README section, and the change between two
estimates for the pull-request review report.

Hook for the PR review report (the lead wires it):
    from tools.cost import report
    lines = report.cost_change(report.estimates(base_templates_dir), report.estimates())
`estimates(templates_dir)` renders every params/<env>.json against the templates in that
directory (a checkout of the base branch's templates/), so base and head use the same params
files, price files and assumptions; `cost_change` returns [] when no floor or ceiling moved.
"""

from __future__ import annotations

from pathlib import Path

from tools import params as params_files
from tools import render
from tools.cost import estimate as est
from tools.cost import facts as facts_mod
from tools.cost import prices as prices_mod

CHANGE_THRESHOLD_USD = 0.01


def estimate_env(env: str, templates_dir: Path = render.TEMPLATES_DIR,
                 overrides: dict[str, str] | None = None,
                 prices_dir: Path = prices_mod.PRICES_DIR) -> est.Estimate:
    facts = facts_mod.collect(env, templates_dir=templates_dir)
    book = prices_mod.load(facts.region, prices_dir)
    return est.build(facts, book, est.assumptions(overrides))


def estimates(templates_dir: Path = render.TEMPLATES_DIR,
              overrides: dict[str, str] | None = None) -> dict[str, est.Estimate]:
    return {env: estimate_env(env, templates_dir, overrides) for env in params_files.environments()}


def table(estimate: est.Estimate) -> list[str]:
    width = max(len(line.component) for line in estimate.lines)
    out = [f"Monthly estimate for {estimate.env} ({estimate.region}, USD, 730 h/month)",
           f"{'component':<{width}}  {'floor':>9}  {'ceiling':>9}  basis / assumptions",
           "-" * (width + 24 + 40)]
    for line in estimate.lines:
        out.append(f"{line.component:<{width}}  {line.floor:>9.2f}  {line.ceiling:>9.2f}  "
                   f"{line.basis}")
    out.append("-" * (width + 24 + 40))
    out.append(f"{'total':<{width}}  {estimate.floor:>9.2f}  {estimate.ceiling:>9.2f}")
    out += ["", estimate.surge, estimate.spot]
    if estimate.unverified_prices:
        out.append("Prices used that are not verified (see the price file): "
                   + ", ".join(estimate.unverified_prices))
    defaults = est.assumptions()
    changed = {k: v for k, v in estimate.assumed.items() if v != defaults[k]}
    out.append("Assumptions (override: --assume name=value): "
               + ", ".join(f"{k}={v:g}{'*' if k in changed else ''}"
                           for k, v in estimate.assumed.items())
               + ("  (* = overridden)" if changed else ""))
    return out


def readme_section(by_env: dict[str, est.Estimate] | None = None) -> str:
    """The per-environment table for the docs (tools/docs.py writes it; default: every env)."""
    by_env = by_env if by_env is not None else estimates()
    envs = sorted(by_env)
    ordered = sorted(envs, key=lambda e: -len(by_env[e].lines))  # the fullest list sets the order
    components = list(dict.fromkeys(x.component for e in ordered for x in by_env[e].lines))
    head = "| component | " + " | ".join(f"{e} floor | {e} ceiling" for e in envs) + " |"
    rows = [head, "|---|" + "---:|---:|" * len(envs)]
    for name in components:
        cells = []
        for e in envs:
            line = next((x for x in by_env[e].lines if x.component == name), None)
            cells += [f"{line.floor:.2f}", f"{line.ceiling:.2f}"] if line else ["-", "-"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows.append("| **total** | " + " | ".join(
        f"**{by_env[e].floor:.2f}** | **{by_env[e].ceiling:.2f}**" for e in envs) + " |")
    notes = [f"- {e}: {by_env[e].surge}" for e in envs]
    return "\n".join([*rows, "", *notes])


def cost_change(base: dict[str, est.Estimate], head: dict[str, est.Estimate]) -> list[str]:
    """Lines for the PR report: per environment, floor and ceiling before -> after, when moved."""
    lines = []
    for env in sorted(set(base) | set(head)):
        old, new = base.get(env), head.get(env)
        if old is None or new is None:
            which = new or old
            lines.append(f"{env}: {'new' if old is None else 'removed'} environment, floor "
                         f"${which.floor:,.2f}/month, ceiling ${which.ceiling:,.2f}/month")
            continue
        if (abs(new.floor - old.floor) < CHANGE_THRESHOLD_USD
                and abs(new.ceiling - old.ceiling) < CHANGE_THRESHOLD_USD):
            continue
        moved = []
        old_lines = {x.component: x for x in old.lines}
        for x in new.lines:
            before = old_lines.pop(x.component, None)
            b_floor, b_ceil = (before.floor, before.ceiling) if before else (0.0, 0.0)
            if abs(x.floor - b_floor) >= CHANGE_THRESHOLD_USD or \
                    abs(x.ceiling - b_ceil) >= CHANGE_THRESHOLD_USD:
                moved.append(f"{x.component} {x.floor - b_floor:+,.2f} / {x.ceiling - b_ceil:+,.2f}")
        moved += [f"{x.component} {-x.floor:+,.2f} / {-x.ceiling:+,.2f}" for x in old_lines.values()]
        lines.append(f"{env}: floor ${old.floor:,.2f} -> ${new.floor:,.2f} "
                     f"({new.floor - old.floor:+,.2f}), ceiling ${old.ceiling:,.2f} -> "
                     f"${new.ceiling:,.2f} ({new.ceiling - old.ceiling:+,.2f}) per month; "
                     f"by component (floor / ceiling): {'; '.join(moved)}")
    return lines
