"""A review as plain text (the terminal) or Markdown (the pull request comment, job summary).

Findings come first, one line each. The detail below them is the engine's own: its text
rendering for the terminal; for Markdown, tables built from its structured result (it has no
Markdown output of its own).
"""

from __future__ import annotations

import json

from tools.review.findings import parsed
from tools.review.review import EnvironmentReview, Report, output_names

ENGINE = "@aws-cdk/cloudformation-diff"
MARKER = "<!-- template-review -->"  # the comment the workflow updates carries this line
MAX_MARKDOWN = 60_000  # a GitHub comment holds 65,536 characters
LIMITS = (f"Offline: the renderings of both sides for each params file, diffed by {ENGINE}. It "
          "cannot see drift of a live stack (use `make preview ENV=<env>` against the account), "
          "and its security tables may miss changes (aws-cdk#1299).")
SIGN = {"WILL_REPLACE": "replace", "MAY_REPLACE": "may replace", "WILL_UPDATE": "update",
        "WILL_CREATE": "create", "WILL_DESTROY": "destroy", "WILL_ORPHAN": "orphan (retained)",
        "NO_CHANGE": "no change", "WILL_IMPORT": "import"}


def _short(value, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(value) -> str:
    return _short(value).replace("|", "\\|").replace("\n", " ")


def _env_summary(review: EnvironmentReview) -> str:
    if review.old is None:
        return "new environment (its params file is added): every resource is created"
    if review.new is None:
        return "environment removed (its params file is deleted): nothing deploys it any more"
    parts = [f"changes in {', '.join(review.layers)}" if review.layers else "no change here"]
    if review.untouched:
        parts.append(f"{', '.join(review.untouched)} changed but render(s) the same here")
    return "; ".join(parts)


def _impacts(result: dict) -> str:
    counts: dict[str, int] = {}
    for change in result["resources"]:
        counts[SIGN.get(change["impact"], change["impact"])] = counts.get(
            SIGN.get(change["impact"], change["impact"]), 0) + 1
    other = len(result["parameters"]) + len(result["outputs"]) + len(result["conditions"])
    parts = [f"{n} {word}" for word, n in sorted(counts.items())]
    return ", ".join(parts + ([f"{other} parameter/output/condition"] if other else [])) or "metadata"


def text(report: Report) -> str:
    lines = [f"Template review: {report.base} -> {report.head}",
             "Changed: " + (", ".join(report.changed_files) or "nothing in templates/ or params/"),
             "", f"Findings ({len(report.findings)}):"]
    lines += [f"  [{f.env}] {f.layer}: {f.kind}: {f.text}" for f in report.findings] or ["  none"]
    lines += ["", "Environments:"]
    for review in report.environments:
        lines.append(f"  {review.env}: {_env_summary(review)}")
        for section in review.extra:
            lines += [f"    {section.title}"] + [f"      {line}" for line in section.lines]
    for review in report.environments:
        for file_name, result in review.layers.items():
            lines += ["", f"=== {review.env} / {file_name} ({ENGINE}) ===",
                      result["text"].rstrip() or "(metadata only)"]
    lines += ["", LIMITS]
    return "\n".join(lines) + "\n"


def _resource_table(result: dict) -> list[str]:
    rows = ["| | Resource | Type | Impact | Changed |", "|---|---|---|---|---|"]
    for change in result["resources"]:
        sign = "+" if change["isAddition"] else "-" if change["isRemoval"] else "~"
        changed = [f"{p['name']} ({SIGN.get(p.get('impact'), 'update')})"
                   for p in change["properties"]] + [o["name"] for o in change["other"]]
        rows.append(f"| {sign} | {change['logicalId']} | {change['newType'] or change['oldType']} "
                    f"| {SIGN.get(change['impact'], change['impact'])} | {_cell(', '.join(changed))} |")
    return rows if len(rows) > 2 else []


def _iam_table(result: dict) -> list[str]:
    rows = ["| | Effect | Action | Resource | Principal |", "|---|---|---|---|---|"]
    for sign, key in (("+", "statementAdditions"), ("-", "statementRemovals")):
        for s in parsed(result["iam"][key]):
            rows.append(f"| {sign} | {s.get('effect')} "
                        + " ".join(f"| {_cell(', '.join((s.get(k) or {}).get('values', [])))}"
                                   for k in ("actions", "resources", "principals")) + " |")
    for sign, key in (("+", "managedPolicyAdditions"), ("-", "managedPolicyRemovals")):
        for p in parsed(result["iam"][key]):
            rows.append(f"| {sign} | managed policy | {_cell(p.get('managedPolicyArn'))} | | "
                        f"{_cell(p.get('identityArn'))} |")
    return ["", "IAM statement changes", ""] + rows if len(rows) > 2 else []


def _sg_table(result: dict, names: dict[str, str]) -> list[str]:
    rows = ["| | Group | Dir | Protocol | Peer |", "|---|---|---|---|---|"]
    groups = result["securityGroups"]
    for key, sign, direction in (("ingressRuleAdditions", "+", "In"), ("ingressRuleRemovals", "-", "In"),
                                 ("egressRuleAdditions", "+", "Out"), ("egressRuleRemovals", "-", "Out")):
        for rule in groups.get(key, []):
            peer = rule.get("peer") or {}
            ports = ("all" if rule.get("ipProtocol") in ("-1", -1) else
                     f"{rule.get('ipProtocol')} {rule.get('fromPort')}-{rule.get('toPort')}")
            source = peer.get("ip") or peer.get("securityGroupId") or peer.get("prefixListId")
            rows.append(f"| {sign} | {names.get(rule['groupId'], rule['groupId'])} | {direction} | "
                        f"{ports} | {_cell(source)} |")
    return ["", "Security group changes", ""] + rows if len(rows) > 2 else []


def _named_list(title: str, items: list[dict]) -> list[str]:
    if not items:
        return []
    return ["", f"{title}: " + ", ".join(
        f"`{i['name']}` ({'added' if i['old'] is None else 'removed' if i['new'] is None else 'changed'})"
        for i in items)]


def markdown(report: Report, details: bool = True) -> str:
    lines = [MARKER, f"### Template review: `{report.base}` → `{report.head}`", "",
             "Changed: " + (", ".join(f"`{f}`" for f in report.changed_files)
                            or "nothing in `templates/` or `params/`"), "",
             f"**Findings ({len(report.findings)})**", ""]
    lines += [f"- **{f.env}** · `{f.layer}` · {f.kind}: {f.text}" for f in report.findings] or [
        "- none: no replacement, deletion, widening, exposure, parameter, output, policy or "
        "timeout change"]
    lines += ["", "| environment | effect |", "|---|---|"]
    lines += [f"| {r.env} | {_env_summary(r).replace('|', '/')} |" for r in report.environments]
    for review in report.environments:
        for section in review.extra:
            lines += ["", f"**{review.env}: {section.title}**", ""] + section.lines
    if details:
        for review in report.environments:
            names = output_names(review.old, review.new)
            for file_name, result in review.layers.items():
                lines += ["", f"<details><summary>{review.env} · {file_name}: {_impacts(result)}"
                              "</summary>", ""]
                lines += _resource_table(result) + _iam_table(result) + _sg_table(result, names)
                lines += _named_list("Outputs", result["outputs"])
                lines += _named_list("Parameters", result["parameters"])
                lines += ["", "</details>"]
    lines += ["", f"<sub>{LIMITS}</sub>"]
    out = "\n".join(lines) + "\n"
    if details and len(out) > MAX_MARKDOWN:
        return markdown(report, details=False).replace(
            "<sub>", "<sub>Per-layer tables left out (too long for a comment): see the job "
                     "summary's artifact. ", 1)
    return out
