"""checkov over the committed templates and the Dockerfiles, from its own environment.

Skips live next to what they skip: a resource's Metadata (checkov.skip, with a comment) or a
`# checkov:skip=ID:reason` line in a Dockerfile. Every skip needs a reason and must still skip
something.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tools.security_gate.report import (
    MIN_REASON,
    REPO,
    TEMPLATES_DIR,
    Finding,
    GateError,
    Report,
    Row,
    Skip,
    relative,
)

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
DOCKERFILES = ("app/Dockerfile", "ollama/Dockerfile")

_DOCKER_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")


def present_dockerfiles() -> list[Path]:
    return [REPO / name for name in DOCKERFILES if (REPO / name).is_file()]


def checkov_skips(templates_dir: Path = TEMPLATES_DIR,
                  dockerfiles: list[Path] | None = None) -> list[Skip]:
    """Every checkov skip: resource Metadata in templates, `# checkov:skip=` in Dockerfiles."""
    skips = []
    for path in sorted(templates_dir.glob("*.json")):
        template = json.loads(path.read_text())
        for lid, resource in template.get("Resources", {}).items():
            entries = ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip") or []
            for entry in entries:
                skips.append(Skip(path.name, lid, str(entry.get("id", "")),
                                  str(entry.get("comment", "") or "").strip()))
    if dockerfiles is None:
        dockerfiles = present_dockerfiles()
    for path in dockerfiles:
        name = relative(path)
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            match = _DOCKER_SKIP.search(text.strip())
            if match:
                skips.append(Skip(name, f"line {number}", match.group(1),
                                  (match.group(2) or "").strip()))
    return skips


def checkov_command(files: list[Path], checkov: Path = CHECKOV) -> list[str]:
    command = [str(checkov), "--framework", "cloudformation", "dockerfile", "--skip-download",
               "--output", "json", "--compact"]
    for path in files:
        command += ["--file", str(path)]
    return command


def checkov_environment() -> dict[str, str]:
    # No update check against PyPI, no telemetry, no platform calls: the gate runs offline.
    return {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE",
            "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", "LOG_LEVEL": "ERROR"}


def start_checkov(files: list[Path], checkov: Path = CHECKOV) -> subprocess.Popen:
    if not checkov.is_file():
        raise GateError(f"{checkov} not found: run `make security` (it creates .venv-checkov from "
                        "security/requirements-checkov.txt)")
    return subprocess.Popen(checkov_command(files, checkov), cwd=REPO, env=checkov_environment(),  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_checkov(process: subprocess.Popen, files: list[Path], skips: list[Skip],
                   report: Report, timeout: float = 600) -> None:
    stdout, stderr = process.communicate(timeout=timeout)
    if process.returncode not in (0, 1):
        raise GateError(f"checkov exited {process.returncode}: {stderr.strip()[-2000:]}")
    try:
        data = json.loads(stdout) if stdout.strip() else []
    except json.JSONDecodeError:
        raise GateError(f"checkov output is not JSON: {stdout[:300]} {stderr[-1500:]}") from None
    results = data if isinstance(data, list) else [data]
    by_type = {}
    for result in results:
        if isinstance(result, dict) and "check_type" in result:
            by_type[result["check_type"]] = result
    applied: set[tuple[str, str, str]] = set()
    for framework in ("cloudformation", "dockerfile"):
        scanned = [p for p in files if (p.name == "Dockerfile") == (framework == "dockerfile")]
        label = f"checkov {framework}"
        scope = (", ".join(relative(p) for p in scanned) if framework == "dockerfile"
                 else f"{len(scanned)} templates")
        result = by_type.get(framework)
        if not scanned:
            report.rows.append(Row(label, "no files"))
            continue
        if result is None:
            report.rows.append(Row(label, scope, passed="0", failed="0", skipped="0"))
            continue
        summary = result["summary"]
        if summary.get("parsing_errors"):
            report.findings.append(Finding("checkov", "-", framework, "parsing", "-",
                                           f"{summary['parsing_errors']} file(s) could not be parsed: "
                                           f"{result['results'].get('parsing_errors')}"))
        for failed in result["results"]["failed_checks"]:
            report.findings.append(Finding(
                "checkov", "-", _display(failed), failed["check_id"],
                failed["resource"].split(".", 1)[-1], failed["check_name"]))
        for skipped in result["results"]["skipped_checks"]:
            applied.add((_display(skipped), skipped["resource"].split(".", 1)[-1],
                         skipped["check_id"]))
        report.rows.append(Row(label, scope, passed=str(summary["passed"]),
                               failed=str(summary["failed"]), skipped=str(summary["skipped"])))
    # Every skip carries a reason, and every skip still applies to something.
    for skip in skips:
        if len(skip.reason) < MIN_REASON:
            report.findings.append(Finding("checkov", "-", skip.file, skip.check, skip.resource,
                                           "skip without a reason a reviewer can accept"))
        is_dockerfile = skip.file.endswith("Dockerfile")
        if not is_dockerfile and (skip.file, skip.resource, skip.check) not in applied:
            report.findings.append(Finding(
                "checkov", "-", skip.file, skip.check, skip.resource,
                "skip that skips nothing: checkov has no such check for this resource type (or it "
                "no longer evaluates it here); remove it from the resource Metadata"))


def _display(result: dict) -> str:
    path = result.get("file_abs_path") or result.get("file_path", "")
    name = Path(path).name
    return relative(Path(path)) if name == "Dockerfile" else name
