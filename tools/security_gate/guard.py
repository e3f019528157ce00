"""cfn-guard over each environment's rendering: the Control Tower rules and security/rules/*.guard.

Both rule sets read the templates as an environment deploys them (tools/render.py: parameters
from params/<env>.json, Conditions resolved): the Control Tower rules cannot see through Ref or
Fn::If. A Control Tower failure listed in the exclusions file is reported as excluded; own
rules have no exclusions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tools import cfnguard, render
from tools import params as params_files
from tools.security_gate.exclusions import exclusion_for
from tools.security_gate.report import (
    REPO,
    TEMPLATES_DIR,
    Exclusion,
    Finding,
    GateError,
    Report,
    Row,
)

RENDERED_DIR = REPO / ".cache" / "security" / "rendered"


def guard_environment(env: str, report: Report, exclusions: list[Exclusion],
                      used: set[tuple[int, str, str]], templates_dir: Path = TEMPLATES_DIR,
                      rendered_dir: Path = RENDERED_DIR) -> None:
    try:
        rendering = render.render_environment(env, templates_dir)
    except (render.RenderError, params_files.ParamsError) as error:
        report.findings.append(Finding("render", env, "-", "render", "-", str(error)))
        return
    for problem in rendering.problems:
        template = problem.split(":", 1)[0]
        report.findings.append(Finding("render", env, template, "deploy", "-", problem))
    report.notes += [f"{env}: {note}" for note in rendering.notes]

    out = rendered_dir / env
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    data = {}
    for name, template in sorted(rendering.templates.items()):
        path = out / name
        path.write_text(json.dumps(template, indent=2, sort_keys=True) + "\n")
        data[name] = path

    package = cfnguard.fetch(quiet=True)
    control_tower = cfnguard.catalogue(package.control_tower_rules, "control-tower",
                                       package.control_tower_metadata)
    own = cfnguard.catalogue(cfnguard.OWN_RULES_DIR, "own")
    overlap = set(control_tower) & set(own)
    if overlap:
        raise GateError(f"own rules reuse Control Tower rule names: {sorted(overlap)}")
    outcomes = cfnguard.validate(data, {**control_tower, **own},
                                 [package.control_tower_rules, cfnguard.OWN_RULES_DIR], package)

    for source, label, rules in (("control-tower", "Control Tower", control_tower),
                                 ("own", "own rules", own)):
        status: dict[str, set[str]] = {name: set() for name in rules}
        for outcome in outcomes:
            if outcome.rule.source != source:
                continue
            if outcome.status != "FAIL":
                status[outcome.rule.name].add(outcome.status)
                continue
            resources = outcome.resources or ["-"]
            for resource in resources:
                finding = Finding(f"guard {'CT' if source == 'control-tower' else 'own'}", env,
                                  outcome.template, outcome.rule.id, resource,
                                  outcome.rule.title if source == "control-tower"
                                  else "; ".join(outcome.messages) or outcome.rule.title)
                match = exclusion_for(finding, exclusions) if source == "control-tower" else None
                if match is not None:
                    index, exclusion = match
                    used.add((index, env, f"{outcome.template}/{resource}"))
                    report.excluded.append((env, finding, exclusion))
                    status[outcome.rule.name].add("EXCLUDED")
                else:
                    report.findings.append(finding)
                    status[outcome.rule.name].add("FAIL")
        counts = {"FAIL": 0, "EXCLUDED": 0, "PASS": 0, "SKIP": 0}
        for seen in status.values():
            key = next(k for k in ("FAIL", "EXCLUDED", "PASS", "SKIP") if k in seen or k == "SKIP")
            counts[key] += 1
        report.rows.append(Row(f"{label} ({env})",
                               f"{len(rules)} rules x {len(data)} templates",
                               passed=str(counts["PASS"]), failed=str(counts["FAIL"]),
                               excluded=str(counts["EXCLUDED"]) if source == "control-tower" else "-",
                               not_applicable=str(counts["SKIP"])))
