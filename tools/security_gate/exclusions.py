"""Exceptions to the scanners, each with its reason: Control Tower exclusions (loaded, matched
and checked for staleness), the IAM allowlist, and the table of every exception for the docs."""

from __future__ import annotations

from pathlib import Path

import yaml

from tools import params as params_files
from tools.security_gate.checkov import checkov_skips
from tools.security_gate.report import (
    EVERY_ENVIRONMENT,
    EXCLUSIONS_NAME,
    MIN_REASON,
    REPO,
    TEMPLATES_DIR,
    Exclusion,
    Finding,
)

EXCLUSIONS_FILE = REPO / "security" / EXCLUSIONS_NAME
IAM_ALLOWLIST_FILE = REPO / "security" / "iam-allowlist.yaml"


def load_exclusions(path: Path = EXCLUSIONS_FILE) -> tuple[list[Exclusion], list[str]]:
    """The exclusion entries and every problem with them (missing reason, environments...)."""
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get("exclusions") or []
    exclusions, problems = [], []
    known_envs = set(params_files.environments())
    for index, entry in enumerate(entries):
        where = f"{path.name} entry {index + 1} ({entry.get('rule', '?')})"
        reason = " ".join(str(entry.get("reason") or "").split())
        listed = entry.get("environments") or ()
        environments = (listed,) if listed == EVERY_ENVIRONMENT else tuple(listed)
        resources = tuple(entry.get("resources") or ())
        if len(reason) < MIN_REASON:
            problems.append(f"{where}: no reason (a reviewer must be able to accept it)")
        if not environments:
            problems.append(f"{where}: no environments")
        unknown = sorted(set(environments) - known_envs - {EVERY_ENVIRONMENT})
        if unknown:
            problems.append(f"{where}: unknown environments {unknown} (params/ has "
                            f"{sorted(known_envs)}; '{EVERY_ENVIRONMENT}' means every one)")
        if not resources or any(resource.count("/") != 1 for resource in resources):
            problems.append(f"{where}: resources must be a list of '<template>/<LogicalId>'")
        exclusions.append(Exclusion(str(entry.get("rule", "")), environments, resources, reason))
    return exclusions, problems


def load_iam_allowlist(path: Path = IAM_ALLOWLIST_FILE) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def exclusion_for(finding: Finding, exclusions: list[Exclusion]) -> tuple[int, Exclusion] | None:
    for index, exclusion in enumerate(exclusions):
        if (exclusion.rule == finding.rule and exclusion.covers(finding.env)
                and f"{finding.template}/{finding.resource}" in exclusion.resources):
            return index, exclusion
    return None


def stale_exclusions(exclusions: list[Exclusion], used: set[tuple[int, str, str]],
                     envs: list[str]) -> list[Finding]:
    """An exclusion that covers no failure (in the environments run) is stale: it must go.

    One named per environment must cover a failure in each of them; one for every environment
    must cover a failure in at least one (a resource may be absent where a condition is off).
    """
    findings = []
    for index, exclusion in enumerate(exclusions):
        for env in (envs[:1] if exclusion.everywhere else exclusion.environments):
            if env not in envs:
                continue
            for resource in exclusion.resources:
                if exclusion.everywhere and any((index, e, resource) in used for e in envs):
                    continue
                if (index, env, resource) not in used:
                    findings.append(Finding(
                        "exclusions", env, resource.split("/")[0], exclusion.rule,
                        resource.split("/")[-1],
                        f"stale exclusion: {exclusion.rule} does not fail here in {env}; remove "
                        f"it from {EXCLUSIONS_FILE.name}"))
    return findings


def exceptions_table(templates_dir: Path = TEMPLATES_DIR) -> str:
    """The table of every scanner exception, generated from where each one lives (tools/docs.py)."""
    rows = ["| scanner | check | where | environments | reason |",
            "|---|---|---|---|---|"]

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    for skip in sorted(checkov_skips(templates_dir), key=lambda s: (s.file, s.resource, s.check)):
        rows.append(f"| checkov | {skip.check} | `{skip.file}` {skip.resource} | all | "
                    f"{cell(skip.reason)} |")
    exclusions, _ = load_exclusions()
    for exclusion in sorted(exclusions, key=lambda e: (e.rule, e.resources)):
        where = ", ".join(f"`{r.split('/')[0]}` {r.split('/')[1]}" for r in exclusion.resources)
        rows.append(f"| Control Tower | {exclusion.rule} | {where} | "
                    f"{'every environment' if exclusion.everywhere else ', '.join(exclusion.environments)}"
                    f" | {cell(exclusion.reason)} |")
    allowlist = load_iam_allowlist()
    for action, reason in sorted((allowlist.get("resource_star_actions") or {}).items()):
        rows.append(f"| IAM tests | `Resource: \"*\"` for {action} | any role | all | "
                    f"{cell(str(reason))} |")
    for entry in allowlist.get("wildcard_action_statements") or []:
        rows.append(f"| IAM tests | `{entry['action']}` | {entry['resource_type']} {entry['property']} "
                    f"statement {entry['sid']} | all | {cell(str(entry['reason']))} |")
    return "\n".join(rows)
