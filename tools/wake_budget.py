"""The wake budget of every environment as Markdown (stacks/wake.py, per params/<env>.json).

    python -m tools.wake_budget             print the tables

docs/infrastructure.md holds the tables as a generated section (tools/docs.py): `make generate`
writes it from the params files over the root template's defaults, so the page cannot drift
from the budget the tests check (tests/stacks/test_wake_budget.py).
"""

from __future__ import annotations

import sys

from stacks import wake
from tools import params


def _kind(values: dict[str, str]) -> str:
    start = ("a wake from zero tasks (ScaleToZero)" if values["ScaleToZero"] == "true"
             else "a scale-out onto a new instance (ScaleToZero off)")
    pool = "warm pool on" if wake.warm_pool_on(values) else "no warm pool"
    return f"{start}, {pool}"


def table(env: str) -> str:
    values = params.with_defaults(env)
    parts = wake.budget(values)
    rows = [f"**{env}**: {_kind(values)}", "", "| part | seconds | source |", "|---|---:|---|"]
    rows += [f"| {p.label} | {p.seconds:g} | {p.source} |" for p in parts]
    target = (f" (designed at most {wake.WAKE_TARGET_SECONDS} s)"
              if values["ScaleToZero"] == "true" and wake.warm_pool_on(values) else "")
    rows.append(f"| **total** | **{wake.total(parts)}** | to a healthy target{target} |")
    return "\n".join(rows)


def readme_section() -> str:
    return "\n\n".join(table(env) for env in params.environments())


if __name__ == "__main__":
    print(readme_section())
    sys.exit(0)
