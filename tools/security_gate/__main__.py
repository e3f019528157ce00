"""python -m tools.security_gate: run the gate, print the summary, exit 1 on any finding."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tools import cfnguard
from tools import security_gate as gate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.security_gate",
                                     description=(gate.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--env", action="append", metavar="ENV",
                        help="environment to render (repeatable; default: every params/<env>.json)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the findings as JSON")
    parser.add_argument("--readme-table", action="store_true", help="print the exceptions table")
    parser.add_argument("--no-checkov", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.readme_table:
        print(gate.exceptions_table())
        return 0
    try:
        report = gate.run(args.env, with_checkov=not args.no_checkov)
    except (gate.GateError, cfnguard.GuardError, gate.params_files.ParamsError) as error:
        print(f"security gate: error: {error}", file=sys.stderr)
        return 2
    print(gate.format_report(report))
    if args.json:
        args.json.write_text(json.dumps({
            "ok": report.ok, "seconds": round(report.seconds, 1),
            "rows": [vars(row) for row in report.rows],
            "findings": [vars(f) for f in report.findings],
            "excluded": [{"env": env, **vars(f)} for env, f, _ in report.excluded],
            "notes": report.notes}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
