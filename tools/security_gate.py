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
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tools import cfnguard, render
from tools import params as params_files

REPO = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO / "templates"
EXCLUSIONS_FILE = REPO / "security" / "guard-exclusions.yaml"
IAM_ALLOWLIST_FILE = REPO / "security" / "iam-allowlist.yaml"
RENDERED_DIR = REPO / ".cache" / "security" / "rendered"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
DOCKERFILES = ("app/Dockerfile", "ollama/Dockerfile")
MIN_REASON = 20  # characters: "n/a" or "false positive" is not a reason

_DOCKER_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")


class GateError(RuntimeError):
    """A scanner could not run (not a finding): the message says what to install or fix."""


@dataclass(frozen=True)
class Finding:
    scanner: str
    env: str  # "-" when it does not depend on the environment
    template: str
    rule: str
    resource: str
    message: str

    def line(self) -> str:
        return (f"FAIL  {self.scanner:<14} {self.env:<5} {self.template:<20} {self.rule:<26} "
                f"{self.resource:<24} {self.message}")


@dataclass(frozen=True)
class Skip:
    """A checkov skip next to the resource it concerns."""

    file: str
    resource: str
    check: str
    reason: str


EVERY_ENVIRONMENT = "all"  # `environments: all` in the exclusions file: every params/<env>.json


@dataclass(frozen=True)
class Exclusion:
    rule: str
    environments: tuple[str, ...]  # (EVERY_ENVIRONMENT,) for every environment there is
    resources: tuple[str, ...]  # "<template>/<LogicalId>"
    reason: str

    @property
    def everywhere(self) -> bool:
        return self.environments == (EVERY_ENVIRONMENT,)

    def covers(self, env: str) -> bool:
        return self.everywhere or env in self.environments


@dataclass
class Row:
    scanner: str
    scope: str
    passed: str = "-"
    failed: str = "-"
    skipped: str = "-"
    excluded: str = "-"
    not_applicable: str = "-"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    excluded: list[tuple[str, Finding, Exclusion]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings


# --- skips and exclusions ---------------------------------------------------------------------


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
        dockerfiles = [REPO / name for name in DOCKERFILES if (REPO / name).is_file()]
    for path in dockerfiles:
        name = _relative(path)
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            match = _DOCKER_SKIP.search(text.strip())
            if match:
                skips.append(Skip(name, f"line {number}", match.group(1),
                                  (match.group(2) or "").strip()))
    return skips


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


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


# --- checkov ------------------------------------------------------------------------------------


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
        scope = (", ".join(_relative(p) for p in scanned) if framework == "dockerfile"
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
    return _relative(Path(path)) if name == "Dockerfile" else name


# --- cfn-guard over the renderings ----------------------------------------------------------------


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
                match = _exclusion_for(finding, exclusions) if source == "control-tower" else None
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


def _exclusion_for(finding: Finding, exclusions: list[Exclusion]) -> tuple[int, Exclusion] | None:
    for index, exclusion in enumerate(exclusions):
        if (exclusion.rule == finding.rule and exclusion.covers(finding.env)
                and f"{finding.template}/{finding.resource}" in exclusion.resources):
            return index, exclusion
    return None


# --- the gate -------------------------------------------------------------------------------------


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


def format_report(report: Report) -> str:
    header = ("scanner", "scope", "pass", "fail", "skipped", "excluded", "n/a")
    rows = [header] + [(r.scanner, r.scope, r.passed, r.failed, r.skipped, r.excluded,
                        r.not_applicable) for r in report.rows]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["Security gate (checkov: checks; cfn-guard: rules, a rule passes when it applied to "
             "some template and failed on none)"]
    for row in rows:
        lines.append("  " + "  ".join(str(cell).ljust(widths[i]) if i < 2 else str(cell).rjust(widths[i])
                                      for i, cell in enumerate(row)))
    lines.append(f"checkov skips: {len(report.skips)}, each next to its resource with its reason "
                 "(docs/security.md table)")
    if report.excluded:
        grouped: dict[tuple[str, str], list[str]] = {}
        for env, finding, _ in report.excluded:
            grouped.setdefault((finding.rule, f"{finding.template}/{finding.resource}"), []).append(env)
        all_envs = sorted({env for env, _, _ in report.excluded})
        lines.append(f"Control Tower failures excluded with a reason in security/{EXCLUSIONS_FILE.name} "
                     f"({len(report.excluded)} over {', '.join(all_envs)}):")
        for (rule, where), envs in sorted(grouped.items()):
            only = "" if sorted(envs) == all_envs else f"  <- {', '.join(sorted(envs))} only"
            lines.append(f"  {rule:<28} {where:<36} {', '.join(sorted(envs))}{only}")
    for note in report.notes:
        if "not present yet" in note or "not created in" in note or "not deployed in" in note:
            lines.append(f"note: {note}")
    if report.findings:
        lines.append(f"FAILED: {len(report.findings)} finding(s):")
        lines += ["  " + finding.line() for finding in report.findings]
    else:
        lines.append("PASSED: no finding.")
    lines.append(f"gate time: {report.seconds:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="append", metavar="ENV",
                        help="environment to render (repeatable; default: every params/<env>.json)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the findings as JSON")
    parser.add_argument("--readme-table", action="store_true", help="print the exceptions table")
    parser.add_argument("--no-checkov", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.readme_table:
        print(exceptions_table())
        return 0
    try:
        report = run(args.env, with_checkov=not args.no_checkov)
    except (GateError, cfnguard.GuardError, params_files.ParamsError) as error:
        print(f"security gate: error: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
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
