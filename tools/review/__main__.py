"""Review what a change to templates/ and params/ does, per environment, offline.

    python -m tools.review [--base REF] [--format text|md] [--out FILE]

BASE defaults to the merge base of HEAD with the main branch. Exit 0 with a report; 2 when the
review cannot run (stale templates, BASE not a ref, node/npm missing), with the fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tools.files import write_atomically
from tools.review import report as formats
from tools.review import sides
from tools.review.engine import ToolMissing
from tools.review.review import build_reports


def _summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.review",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=None, help="git ref to compare with (default: the "
                                                      "merge base of HEAD with main)")
    parser.add_argument("--format", choices=("text", "md"), default="text")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--summary", action="store_true",
                        help="also append it (or why it could not run) to $GITHUB_STEP_SUMMARY")
    args = parser.parse_args(argv)
    try:
        sides.check_fresh()
        commit, label = sides.resolve_base(args.base)
        base = sides.snapshot_at(commit, f"{label} ({commit[:12]})")
        head = sides.working_tree()
        [report] = build_reports([(base, head)])
    except (sides.ReviewError, ToolMissing) as error:
        print(f"make diff: error: {error}", file=sys.stderr)
        if args.summary:
            _summary(f"### Template review could not run\n\n```\n{error}\n```\n")
        return 2
    output = formats.markdown(report) if args.format == "md" else formats.text(report)
    if args.out:
        write_atomically(args.out, output)
    if args.summary:
        _summary(output)
    sys.stdout.write(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
