"""Load balancer layer: HTTPS only (80 redirects), TLS 1.3, /readyz, the timeout budget."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.contract import GATEWAY_PORT, TIMEOUTS
from stacks.load_balancer import TLS_POLICY
from tests.cfn import REPO, generated, props, resources

CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")


def lb():
    return generated()["load_balancer.json"]


def listener(port: int) -> dict:
    found = [props(r) for r in resources(lb(), "AWS::ElasticLoadBalancingV2::Listener").values()
             if props(r)["Port"] == port]
    assert len(found) == 1
    return found[0]


def alb_attributes(access_logs: bool = True) -> dict:
    """The ALB's attributes with the AccessLogsOn condition resolved."""
    alb = resources(lb(), "AWS::ElasticLoadBalancingV2::LoadBalancer")["LoadBalancer"]
    found = {}
    for item in props(alb)["LoadBalancerAttributes"]:
        if "Fn::If" in item:
            condition, when_true, when_false = item["Fn::If"]
            assert condition == "AccessLogsOn"
            item = when_true if access_logs else when_false
            if item == {"Ref": "AWS::NoValue"}:
                continue
        found[item["Key"]] = item["Value"]
    return found


def target_group() -> dict:
    return props(resources(lb(), "AWS::ElasticLoadBalancingV2::TargetGroup")["TargetGroup"])


def test_http_listener_only_redirects_to_https_with_301():
    http = listener(80)
    assert http["Protocol"] == "HTTP"
    actions = http["DefaultActions"]
    assert [a["Type"] for a in actions] == ["redirect"]
    assert "TargetGroupArn" not in actions[0] and "ForwardConfig" not in actions[0]
    assert actions[0]["RedirectConfig"]["Protocol"] == "HTTPS"
    assert actions[0]["RedirectConfig"]["Port"] == "443"
    assert actions[0]["RedirectConfig"]["StatusCode"] == "HTTP_301"
    rules = resources(lb(), "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert rules and all(props(r)["ListenerArn"] == {"Ref": "HttpsListener"}
                         for r in rules.values()), "no listener rule may add a forward to HTTP"


def test_https_listener_uses_tls13_and_forwards_only_through_the_gate():
    https = listener(443)
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"] == TLS_POLICY
    assert "TLS13" in https["SslPolicy"]
    # The default action answers itself; only the bearer rule forwards (test_listener_rules.py).
    (default,) = https["DefaultActions"]
    assert default["Type"] == "fixed-response" and "TargetGroupArn" not in default
    forwards = [props(r) for r in resources(lb(), "AWS::ElasticLoadBalancingV2::ListenerRule").values()
                if any(a["Type"] == "forward" for a in props(r)["Actions"])]
    (rule,) = forwards
    assert rule["Actions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": "TargetGroup"}}]
    assert https["Certificates"] == [{"CertificateArn": {
        "Fn::If": ["CreateCertificate", {"Ref": "Certificate"}, {"Ref": "CertificateArn"}]}}]


@pytest.mark.parametrize("port", [80, 443])
def test_alb_written_responses_carry_no_server_header(port):
    attributes = {a["Key"]: a["Value"] for a in listener(port)["ListenerAttributes"]}
    assert attributes["routing.http.response.server.enabled"] == "false"


def test_target_group_is_ip_on_the_gateway_port_checked_on_readyz():
    tg = target_group()
    assert tg["TargetType"] == "ip" and tg["Port"] == GATEWAY_PORT and tg["Protocol"] == "HTTP"
    assert tg["HealthCheckPath"] == "/readyz" and tg["Matcher"] == {"HttpCode": "200"}
    for key in ("HealthCheckIntervalSeconds", "HealthCheckTimeoutSeconds",
                "HealthyThresholdCount", "UnhealthyThresholdCount"):
        assert tg[key] == {"Ref": key}
        assert key in lb()["Parameters"] and "Default" in lb()["Parameters"][key]


def test_timeouts_come_from_the_budget_and_hold_their_inequalities():
    idle = int(alb_attributes()["idle_timeout.timeout_seconds"])
    delay = int({a["Key"]: a["Value"] for a in target_group()["TargetGroupAttributes"]}[
        "deregistration_delay.timeout_seconds"])
    assert idle == TIMEOUTS.alb_idle_timeout_seconds
    assert delay == TIMEOUTS.deregistration_delay_seconds
    assert idle >= TIMEOUTS.max_generation_seconds, "a silent non-streaming answer would be cut"
    assert TIMEOUTS.keep_alive_seconds > idle, "the gateway must outlive the ALB's idle timer"
    assert delay >= TIMEOUTS.max_generation_seconds, "deploys would cut generations short"
    assert TIMEOUTS.stream_ping_seconds < idle
    assert idle <= 4000 and delay <= 3600


def test_alb_hardening_attributes_are_explicit():
    attributes = alb_attributes()
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["routing.http.desync_mitigation_mode"] in ("defensive", "strictest")
    assert attributes["routing.http2.enabled"] == "true"
    assert attributes["deletion_protection.enabled"] == {"Ref": "DeletionProtection"}
    assert attributes["access_logs.s3.enabled"] == {"Ref": "AccessLogs"}
    assert attributes["access_logs.s3.bucket"] == {"Ref": "AccessLogBucket"}


def test_with_access_logs_off_no_empty_bucket_attribute_is_sent():
    # ELB refuses an empty access_logs.s3.bucket even when logging is disabled.
    attributes = alb_attributes(access_logs=False)
    assert "access_logs.s3.bucket" not in attributes
    assert "access_logs.s3.prefix" not in attributes
    assert all(value != "" for value in attributes.values())


def test_subnets_follow_the_scheme():
    alb = props(lb()["Resources"]["LoadBalancer"])
    assert alb["Subnets"] == {"Fn::If": ["IsInternal", {"Ref": "PrivateSubnetIds"},
                                         {"Ref": "PublicSubnetIds"}]}
    assert alb["SecurityGroups"] == [{"Ref": "AlbSecurityGroupId"}]


def test_access_log_bucket_blocks_public_access_and_denies_plain_http():
    bucket = resources(lb(), "AWS::S3::Bucket")["AccessLogBucket"]
    block = props(bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                     "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    sse = props(bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props(bucket)["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == {
        "Ref": "AccessLogExpirationDays"}
    policy = props(resources(lb(), "AWS::S3::BucketPolicy")["AccessLogBucketPolicy"])
    deny = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert len(deny) == 1
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny[0]["Principal"] == "*"


def test_log_delivery_writes_only_under_its_prefix():
    policy = props(lb()["Resources"]["AccessLogBucketPolicy"])["PolicyDocument"]
    allow = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert len(allow) == 1 and allow[0]["Action"] == ["s3:PutObject"]
    assert allow[0]["Resource"][0]["Fn::Sub"][0].endswith("/alb/AWSLogs/${AWS::AccountId}/*")
    principal = allow[0]["Principal"]
    assert set(principal) == {"AWS", "Service"}  # one of them is AWS::NoValue at deploy time
    mapping = lb()["Mappings"]["ElbLogDelivery"]
    assert mapping["us-east-1"]["Principal"] == "127311923021"
    assert mapping["eu-central-2"]["Principal"] == "service-principal"


def _parameter_file(tmp_path: Path, name: str, extra: dict) -> Path:
    values = {
        "VpcId": "vpc-0123456789abcdef0", "AlbSecurityGroupId": "sg-0123456789abcdef0",
        "PublicSubnetIds": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"],
        "PrivateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        **extra,
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps([{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]))
    return path


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        ("create-dns-validated", {"DomainName": "api.example.com", "HostedZoneId": "Z0123456789ABC",
                                  "CreateDnsRecord": "true"}),
        ("existing-arn", {"CertificateArn": "arn:aws:acm:us-east-1:111122223333:certificate/"
                                            "0b1c2d3e-0000-0000-0000-000000000000",
                          "DomainName": "api.example.com"}),
    ],
)
def test_both_certificate_modes_lint_clean(tmp_path, mode, extra):
    path = _parameter_file(tmp_path, mode, extra)
    result = subprocess.run(
        [CFN_LINT, "--include-checks", "I", "--parameter-files", str(path), "--",
         str(REPO / "templates" / "load_balancer.json")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_refuse_a_missing_zone_and_root_carries_them():
    # Evaluated against params files and bad combinations in tests/stacks/test_root.py.
    assert "Rules" not in lb()
    rules = generated()["root.json"]["Rules"]
    certificate = rules["CertificateNeedsZone"]
    assert certificate["RuleCondition"] == {"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}
    asserted = [a["Assert"]["Fn::Not"][0]["Fn::Equals"][0]["Ref"] for a in certificate["Assertions"]]
    assert asserted == ["HostedZoneId"]
    dns = rules["DnsRecordNeedsZone"]
    assert dns["RuleCondition"] == {"Fn::Equals": [{"Ref": "CreateDnsRecord"}, "true"]}


def test_domain_name_is_required():
    domain = lb()["Parameters"]["DomainName"]
    assert "Default" not in domain
    assert not re.fullmatch(domain["AllowedPattern"], "")


def test_certificate_is_dns_validated_in_the_zone():
    cert = lb()["Resources"]["Certificate"]
    assert cert["Condition"] == "CreateCertificate"
    assert props(cert)["ValidationMethod"] == "DNS"
    assert props(cert)["DomainValidationOptions"] == [
        {"DomainName": {"Ref": "DomainName"}, "HostedZoneId": {"Ref": "HostedZoneId"}}]


def test_service_url_is_the_domain_the_certificate_covers():
    # Never the ALB's own DNS name: no certificate matches it, so TLS verification would fail.
    assert lb()["Outputs"]["ServiceUrl"]["Value"] == {"Fn::Sub": "https://${DomainName}"}


def test_full_name_outputs_form_the_request_count_label():
    outputs = lb()["Outputs"]
    assert outputs["LoadBalancerFullName"]["Value"] == {
        "Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]}
    assert outputs["TargetGroupFullName"]["Value"] == {
        "Fn::GetAtt": ["TargetGroup", "TargetGroupFullName"]}


def test_waf_counts_the_body_size_rule_and_limits_rate_per_ip():
    acl = props(lb()["Resources"]["WebAcl"])
    rules = {r["Name"]: r for r in acl["Rules"]}
    rate = rules["rate-per-ip"]["Statement"]["RateBasedStatement"]
    assert rate == {"AggregateKeyType": "IP", "Limit": {"Ref": "WafRateLimit"}}
    common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    counted = {o["Name"] for o in common["RuleActionOverrides"]
               if o["ActionToUse"] == {"Count": {}}}
    # Body rules that ordinary prompts trip (long, or about code, paths, URLs) only count.
    assert counted == {"SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY",
                       "GenericRFI_BODY", "EC2MetaDataSSRF_BODY", "NoUserAgent_HEADER"}
    assert lb()["Resources"]["WebAclAssociation"]["Condition"] == "WafOn"


def test_service_url_is_a_root_output():
    assert generated()["root.json"]["Outputs"]["ServiceUrl"]["Value"] == {
        "Fn::GetAtt": ["LoadBalancer", "Outputs.ServiceUrl"]}
