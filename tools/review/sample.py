"""The docs' sample review: a real report for a fixed sample change of the current templates.

readme_section() is the producer of the generated section "review-sample" (tools/docs.py):
`make generate` writes it and `generate.py --check` fails when it is stale (it depends on the
templates, so it changes when they do).
"""

from __future__ import annotations

import json

from tools import params as params_files
from tools.review import report as formats
from tools.review.review import build_reports
from tools.review.sides import Snapshot, working_tree

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
    return body
