"""python -m tools.cost ENV [--assume name=value ...] [--assumptions FILE]

Prints the monthly estimate of params/ENV.json at its floor and ceiling, by component, from the
committed templates (rendered for ENV) and prices/<region>.json. No AWS call is made.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tools import params as params_files
from tools.cost import estimate as est
from tools.cost import facts as facts_mod
from tools.cost import prices as prices_mod
from tools.cost import report, schedule

ERRORS = (prices_mod.PriceError, est.AssumptionError, facts_mod.FactsError,
          schedule.ScheduleError, params_files.ParamsError)


def _overrides(pairs: list[str], path: str | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if path:
        try:
            loaded = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise est.AssumptionError(f"assumptions file {path}: {error}") from None
        if not isinstance(loaded, dict):
            raise est.AssumptionError(f"assumptions file {path}: must be a JSON object "
                                      "{\"name\": number}")
        values.update({k: str(v) for k, v in loaded.items()})
    for pair in pairs:
        if "=" not in pair:
            raise est.AssumptionError(f"--assume {pair!r}: write name=value, e.g. nat_gb_per_"
                                      "instance_month=20")
        name, value = pair.split("=", 1)
        values[name.strip()] = value.strip()
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env", nargs="?", help="environment: params/ENV.json")
    parser.add_argument("--assume", action="append", default=[], metavar="NAME=VALUE",
                        help="override a usage assumption (repeatable); names: "
                        + ", ".join(est.ASSUMPTIONS))
    parser.add_argument("--assumptions", metavar="FILE", help="JSON object of assumptions")
    args = parser.parse_args(argv)
    try:
        if not args.env:
            parser.error("say which environment: python -m tools.cost dev (params/<env>.json)")
        overrides = _overrides(args.assume, args.assumptions)
        print("\n".join(report.table(report.estimate_env(args.env, overrides=overrides))))
        return 0
    except ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
