"""The README's sample review: a real report for a fixed sample change of the current templates.

    python -m tools.review.sample --write     rewrite the generated section of README.md
    python -m tools.review.sample --check     exit 1 when it is stale

readme_section() is what generate.py can call to keep the section current (the section depends
on the templates, so it changes when they do).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tools import params as params_files
from tools.files import write_atomically
from tools.review import report as formats
from tools.review.review import build_reports
from tools.review.sides import Snapshot, working_tree

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN = "<!-- BEGIN generated:review-sample -->"
END = "<!-- END generated:review-sample -->"
SAMPLE = ("the ECS service gets a new name (`stacks/service.py`), and prod's load balancer is "
          "made internal (`LoadBalancerScheme=internal` in `params/prod.json`)")


def sample_sides(base: Snapshot) -> tuple[Snapshot, Snapshot]:
    templates = {name: json.loads(text) for name, text in base.templates.items()}
    templates["service.json"]["Resources"]["Service"]["Properties"]["ServiceName"] = {
        "Fn::Sub": "${ProjectName}-${EnvironmentName}-api"}
    prod = params_files.parse(base.params["prod"], "params/prod.json")
    prod["LoadBalancerScheme"] = "internal"
    head = Snapshot(label="sample change",
                    templates={n: json.dumps(t, indent=2, sort_keys=True) + "\n"
                               for n, t in templates.items()},
                    params={**base.params, "prod": params_files.render(prod)})
    return Snapshot("main", base.templates, base.params), head


def readme_section(base: Snapshot | None = None) -> str:
    [report] = build_reports([sample_sides(base or working_tree())])
    body = formats.markdown(report).replace(formats.MARKER + "\n", "", 1)
    return f"{BEGIN}\n<!-- python -m tools.review.sample --write -->\n\n{body}\n{END}"


def replace_section(readme: str, section: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme):
        raise ValueError(f"README.md has no {BEGIN} ... {END} section")
    return pattern.sub(lambda _: section, readme, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    current = README.read_text()
    updated = replace_section(current, readme_section())
    if args.check:
        if updated != current:
            print("README.md: the review sample is stale; run python -m tools.review.sample --write",
                  file=sys.stderr)
            return 1
        return 0
    if args.write and updated != current:
        write_atomically(README, updated)
    print("README.md review sample up to date" if updated == current else "README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
