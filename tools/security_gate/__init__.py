"""The security gate: checkov, the AWS Control Tower guard rules and the project's own rules.

    python -m tools.security_gate [--env prod ...]     run it; exit 1 naming every failure

What runs (all offline):
- checkov (CloudFormation and Dockerfile frameworks, --skip-download) from its own environment
  .venv-checkov, over every committed template and over app/Dockerfile and ollama/Dockerfile
  when they exist (the summary says when one does not yet). Skips live in each resource's
  Metadata (checkov.skip, with a comment) or as `# checkov:skip=ID:reason` in a Dockerfile.
- cfn-guard with the AWS Control Tower proactive-control rules and with security/rules/*.guard,
  over every template as each environment deploys it (tools/render.py: parameters from
  params/<env>.json, Conditions resolved). Control Tower failures that cannot apply are listed,
  with reasons, in security/guard-exclusions.yaml; own rules have no exclusions.
Any failure, a skip or exclusion without a reason, a stale exclusion, or a problem found while
rendering fails the gate; the summary names scanner, environment, template, rule and resource.

By part: checkov.py (the scan and its skips), guard.py (cfn-guard over the renderings),
exclusions.py (exclusions, the IAM allowlist, the docs table of every exception), report.py
(findings and the printed summary); run() below puts them together, __main__.py is the CLI.
"""

from __future__ import annotations

import time
from pathlib import Path

from tools import params as params_files
from tools.security_gate.checkov import (
    CHECKOV,
    DOCKERFILES,
    checkov_command,
    checkov_environment,
    checkov_skips,
    finish_checkov,
    start_checkov,
)
from tools.security_gate.exclusions import (
    EXCLUSIONS_FILE,
    exceptions_table,
    load_exclusions,
    load_iam_allowlist,
    stale_exclusions,
)
from tools.security_gate.guard import RENDERED_DIR, guard_environment
from tools.security_gate.report import (
    EVERY_ENVIRONMENT,
    MIN_REASON,
    REPO,
    TEMPLATES_DIR,
    Exclusion,
    Finding,
    GateError,
    Report,
    Row,
    Skip,
    format_report,
)

__all__ = [
    "CHECKOV", "DOCKERFILES", "EVERY_ENVIRONMENT", "EXCLUSIONS_FILE", "MIN_REASON",
    "RENDERED_DIR", "Exclusion", "Finding", "GateError", "Report", "Row", "Skip",
    "checkov_command", "checkov_environment", "checkov_skips", "exceptions_table",
    "finish_checkov", "format_report", "load_exclusions", "load_iam_allowlist", "params_files",
    "run", "stale_exclusions", "start_checkov",
]


def run(envs: list[str] | None = None, checkov: Path = CHECKOV, templates_dir: Path = TEMPLATES_DIR,
        with_checkov: bool = True, dockerfiles: list[Path] | None = None,
        rendered_dir: Path = RENDERED_DIR) -> Report:
    """The whole gate. dockerfiles: default app/Dockerfile and ollama/Dockerfile, when present."""
    started = time.monotonic()
    report = Report()
    envs = envs or params_files.environments()
    templates = sorted(templates_dir.glob("*.json"))
    if dockerfiles is None:
        dockerfiles = [REPO / name for name in DOCKERFILES if (REPO / name).is_file()]
        for name in DOCKERFILES:
            if not (REPO / name).is_file():
                report.notes.append(f"{name}: not present yet, not scanned (another issue writes "
                                    "it); the gate scans it as soon as it exists")
    skips = checkov_skips(templates_dir, dockerfiles=dockerfiles)
    report.skips = skips
    process = start_checkov(templates + dockerfiles, checkov) if with_checkov else None

    exclusions, problems = load_exclusions()
    for problem in problems:
        report.findings.append(Finding("exclusions", "-", EXCLUSIONS_FILE.name, "reason", "-", problem))
    used: set[tuple[int, str, str]] = set()
    try:
        for env in envs:
            guard_environment(env, report, exclusions, used, templates_dir, rendered_dir)
    except BaseException:
        if process is not None:
            process.kill()
            process.communicate()
        raise
    if process is not None:
        finish_checkov(process, templates + dockerfiles, skips, report)
        report.rows.sort(key=lambda row: not row.scanner.startswith("checkov"))

    report.findings += stale_exclusions(exclusions, used, envs)
    report.seconds = time.monotonic() - started
    return report
