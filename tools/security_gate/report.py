"""What the gate finds and how it prints it: findings, the summary rows, the report text."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = REPO / "templates"
MIN_REASON = 20  # characters: "n/a" or "false positive" is not a reason


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


@dataclass(frozen=True)
class Exclusion:
    """A Control Tower failure accepted with a reason (security/guard-exclusions.yaml)."""

    rule: str
    environments: tuple[str, ...]  # (EVERY_ENVIRONMENT,) for every environment there is
    resources: tuple[str, ...]  # "<template>/<LogicalId>"
    reason: str

    @property
    def everywhere(self) -> bool:
        return self.environments == (EVERY_ENVIRONMENT,)

    def covers(self, env: str) -> bool:
        return self.everywhere or env in self.environments


EVERY_ENVIRONMENT = "all"  # `environments: all` in the exclusions file: every params/<env>.json
EXCLUSIONS_NAME = "guard-exclusions.yaml"


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


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


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
        lines.append(f"Control Tower failures excluded with a reason in security/{EXCLUSIONS_NAME} "
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
