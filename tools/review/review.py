"""Assemble reviews: render both sides per environment, diff every layer in one node process,
read the findings, and leave room for more sections per environment.

Other reports add a section per environment by appending a function to EXTRA_SECTIONS (the cost
issue adds "change in floor and ceiling per environment" this way): it gets the
EnvironmentReview (both renderings, the engine's results per layer, the findings) and returns a
Section or None.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from tools import params as params_files
from tools.review import engine, rendering
from tools.review.findings import Finding, layer_findings, sort_key
from tools.review.parameters import FACING_FILES, parameter_findings
from tools.review.rendering import Rendering
from tools.review.sides import Snapshot


@dataclass
class Section:
    """An extra block in one environment's part of the report (Markdown lines)."""

    title: str
    lines: list[str]


@dataclass
class EnvironmentReview:
    env: str
    old: Rendering | None  # None: the environment does not exist on that side
    new: Rendering | None
    layers: dict[str, dict] = field(default_factory=dict)  # file name -> engine result (changed)
    findings: list[Finding] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)  # changed templates with no effect here
    extra: list[Section] = field(default_factory=list)


@dataclass
class Report:
    base: str
    head: str
    changed_files: list[str]
    environments: list[EnvironmentReview]
    findings: list[Finding]


def cost_section(review: EnvironmentReview) -> Section | None:
    """The change in monthly floor and ceiling (tools/cost), when the change moves them."""
    from tools.cost import report as cost_report  # price files and cost facts: only when asked

    if not (review.old and review.new and review.layers) or review.old.error or review.new.error:
        return None
    try:
        estimates = [cost_report.estimate_rendering(review.env, side.templates, side.region)
                     for side in (review.old, review.new)]
    except cost_report.ERRORS as error:
        return Section("Monthly cost", [f"- cannot estimate: {error}"])
    lines = cost_report.cost_change({review.env: estimates[0]}, {review.env: estimates[1]})
    return Section("Monthly cost", [f"- {line}" for line in lines]) if lines else None


EXTRA_SECTIONS: list[Callable[[EnvironmentReview], Section | None]] = [cost_section]


def output_names(*renderings: Rendering | None) -> dict[str, str]:
    """Rendered output value -> output name (to name a security group by its role)."""
    names = {}
    for item in renderings:
        for template in (item.templates.values() if item else ()):
            for name, output in (template.get("Outputs") or {}).items():
                if isinstance(output.get("Value"), str):
                    names.setdefault(output["Value"], name)
    return names


def build_reports(sides: list[tuple[Snapshot, Snapshot]]) -> list[Report]:
    """One report per (base, head) pair; all renderings cached, all diffs in one node process."""
    requests = []
    for old, new in sides:
        for env in sorted(set(old.params) | set(new.params)):
            requests += [(snap, env) for snap in (old, new) if env in snap.params]
    keys = [(id(snapshot), env) for snapshot, env in requests]
    rendered = dict(zip(keys, rendering.render_all(requests), strict=True))

    pairs = []
    for index, (old, new) in enumerate(sides):
        for env in sorted(set(old.params) & set(new.params)):
            before, after = rendered[(id(old), env)], rendered[(id(new), env)]
            for file_name in sorted(set(before.templates) | set(after.templates)):
                a, b = before.templates.get(file_name), after.templates.get(file_name)
                if a != b:
                    pairs.append({"key": f"{index}/{env}/{file_name}", "old": a, "new": b})
        for file_name in FACING_FILES:
            if old.templates.get(file_name) != new.templates.get(file_name):
                pairs.append({"key": f"{index}/raw/{file_name}",
                              "old": json.loads(old.templates.get(file_name) or "{}"),
                              "new": json.loads(new.templates.get(file_name) or "{}")})
    results = engine.diff_pairs(pairs)

    reports = []
    for index, (old, new) in enumerate(sides):
        changed = old.changed_files(new)
        changed_templates = [f.split("/", 1)[1] for f in changed if f.startswith("templates/")]
        new_values = {env: params_files.parse(text, f"params/{env}.json")
                      for env, text in new.params.items()}
        raw_findings = []
        for file_name in FACING_FILES:
            if f"{index}/raw/{file_name}" in results:
                raw_findings += parameter_findings(file_name, results[f"{index}/raw/{file_name}"],
                                                   new_values)
        environments = []
        for env in sorted(set(old.params) | set(new.params)):
            review = EnvironmentReview(env, rendered.get((id(old), env)),
                                       rendered.get((id(new), env)))
            review.findings = [f for f in raw_findings if f.env == env]
            if review.new and review.new.error:
                review.findings.append(Finding(env, "root", "render",
                                               f"the change does not render for {env}: "
                                               f"{review.new.error}"))
            if review.old and review.new:
                names = output_names(review.old, review.new)
                for key, result in results.items():
                    prefix = f"{index}/{env}/"
                    if not key.startswith(prefix):
                        continue
                    file_name = key[len(prefix):]
                    review.layers[file_name] = result
                    review.findings += layer_findings(
                        env, file_name, result, review.old.templates.get(file_name) or {},
                        review.new.templates.get(file_name) or {}, names)
                review.untouched = [f for f in changed_templates if f not in review.layers]
            review.findings.sort(key=sort_key)
            review.extra = [s for s in (hook(review) for hook in EXTRA_SECTIONS) if s]
            environments.append(review)
        findings = [f for review in environments for f in review.findings]
        reports.append(Report(old.label, new.label, changed, environments, findings))
    return reports
