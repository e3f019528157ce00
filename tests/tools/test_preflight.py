"""tools.preflight capacity checks and the runner/CLI, against stubbed AWS responses.

Every check gets a table of cases: ok, failed, could not check. The Stubber fails a test on any
call it was not told to expect (and on an expected call that did not come), so each case pins
the exact read-only calls a check makes. Clients make one attempt (no retries), so a stubbed
throttling error reaches the check as AWS would return it after the SDK's retries. The
certificate, DNS and artifact checks: test_preflight_account.py.
"""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from tests.tools.preflight_support import (
    REGION,
    context,
    expect_stack,
    run,
    text,
    title_of,
)
from tools.preflight import capacity, cli, runner
from tools.preflight.core import Aws, Result, Status

# ---------------------------------------------------------------------------------------------
# GPU vCPU quota
# ---------------------------------------------------------------------------------------------

def instance(kind: str, lifecycle: str | None = None, **tags: str) -> dict:
    body = {"InstanceId": "i-0", "InstanceType": kind,
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    if lifecycle:
        body["InstanceLifecycle"] = lifecycle
    return body


def expect_types(ec2: Stubber, sizes: dict[str, int]) -> None:
    ec2.add_response("describe_instance_types", {"InstanceTypes": [
        {"InstanceType": k, "VCpuInfo": {"DefaultVCpus": v}} for k, v in sizes.items()]},
        {"InstanceTypes": sorted(sizes)})


def expect_quota(sq: Stubber, code: str, value: float | None, name: str, service: str = "ec2",
                 error: str | None = None) -> None:
    request = {"ServiceCode": service, "QuotaCode": code}
    if error:
        sq.add_client_error("get_service_quota", service_error_code=error,
                            service_message="no", expected_params=request)
    else:
        sq.add_response("get_service_quota", {"Quota": {"QuotaName": name, "Value": value}},
                        request)


GVT = "Running On-Demand G and VT instances"
RUNNING = {"Filters": [{"Name": "instance-state-name", "Values": ["pending", "running"]}]}


@pytest.mark.parametrize("case, quota, running, status, expected", [
    ("quota covers AsgMaxSize + surge", 64, [], Status.OK,
     ["quota 64 vCPUs", "12 vCPUs = (AsgMaxSize 2 + 1 for a `make roll` surge) x 4"]),
    ("new account: quota 0", 0, [], Status.FAILED,
     ["quota 0 vCPUs", "request-service-quota-increase --service-code ec2 --quota-code "
      "L-DB2E81BA --desired-value 12 --region us-east-1", "lower AsgMaxSize"]),
    ("other G instances use it; spot, standard and own instances do not count", 12,
     [instance("g4dn.xlarge"), instance("g5.xlarge", lifecycle="spot"), instance("m5.large"),
      instance("g5.xlarge", Project="llm-api", Environment="dev")], Status.FAILED,
     ["4 in use by other running G/VT instances", "--desired-value 16"]),
    ("exactly enough", 16, [instance("vt1.3xlarge")], Status.OK, ["12 free"]),
])
def test_gpu_quota(stubs, case, quota, running, status, expected):
    ctx = context(stubs)
    ec2, sq = stubs("ec2"), stubs("service-quotas")
    expect_types(ec2, {"g5.xlarge": 4})
    expect_quota(sq, "L-DB2E81BA", quota, GVT)
    ec2.add_response("describe_instances",
                     {"Reservations": [{"Instances": running}] if running else []}, RUNNING)
    others = {i["InstanceType"] for i in running if capacity.GPU_FAMILY.match(i["InstanceType"])
              and i.get("InstanceLifecycle") != "spot" and not i["Tags"]}
    if others:
        expect_types(ec2, {k: 4 for k in others})
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is status, case
    for fragment in expected:
        assert fragment in text(result), (case, text(result))


@pytest.mark.parametrize("case, errors, fragment", [
    ("no permission", ["AccessDeniedException"], "allow servicequotas:GetServiceQuota"),
    ("throttled", ["ThrottlingException"], "throttled"),
    ("no applied value and no default", ["NoSuchResourceException", "NoSuchResourceException"],
     "servicequotas:GetAWSDefaultServiceQuota did not answer"),
])
def test_gpu_quota_that_cannot_be_read_is_could_not_check(stubs, case, errors, fragment):
    ctx = context(stubs)
    ec2, sq = stubs("ec2"), stubs("service-quotas")
    expect_types(ec2, {"g5.xlarge": 4})
    expect_quota(sq, "L-DB2E81BA", None, GVT, error=errors[0])
    if len(errors) > 1:
        sq.add_client_error("get_aws_default_service_quota", service_error_code=errors[1],
                            expected_params={"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is Status.UNKNOWN, case
    assert fragment in text(result)


def test_gpu_quota_falls_back_to_the_aws_default_when_no_value_is_applied(stubs):
    ctx = context(stubs)
    ec2, sq = stubs("ec2"), stubs("service-quotas")
    expect_types(ec2, {"g5.xlarge": 4})
    expect_quota(sq, "L-DB2E81BA", None, GVT, error="NoSuchResourceException")
    sq.add_response("get_aws_default_service_quota", {"Quota": {"QuotaName": GVT, "Value": 32}},
                    {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    ec2.add_response("describe_instances", {"Reservations": []}, RUNNING)
    assert run(ctx, title_of(capacity.check_gpu_quota)).status is Status.OK


def test_a_quota_code_that_names_another_quota_is_never_ok(stubs):
    ctx = context(stubs)
    expect_types(stubs("ec2"), {"g5.xlarge": 4})
    expect_quota(stubs("service-quotas"), "L-DB2E81BA", 1000,
                 "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is Status.UNKNOWN
    assert "not the G and VT quota" in text(result)


def test_unknown_instance_type_fails_naming_it(stubs):
    ctx = context(stubs, InstanceType="g9.xlarge")
    stubs("ec2").add_response("describe_instance_types", {"InstanceTypes": []},
                              {"InstanceTypes": ["g9.xlarge"]})
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is Status.FAILED and "g9.xlarge" in text(result)


@pytest.mark.parametrize("max_size, percent, surge", [
    (2, 110, 1), (8, 110, 1), (10, 110, 1), (11, 110, 2), (2, 200, 2), (8, 200, 8), (1, 100, 1)])
def test_roll_surge(max_size, percent, surge):
    assert capacity.roll_surge(max_size, percent) == surge


# ---------------------------------------------------------------------------------------------
# VPCs and Elastic IPs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, quota, vpcs, stack, status, fragment", [
    ("room for one more", 5, 1, False, Status.OK, "1 more"),
    ("full, new environment", 5, 5, False, Status.FAILED,
     "--service-code vpc --quota-code L-F678F1CE --desired-value 6"),
    ("full, but the stack exists", 5, 5, True, Status.OK, "already created"),
])
def test_vpcs(stubs, case, quota, vpcs, stack, status, fragment):
    ctx = context(stubs)
    expect_quota(stubs("service-quotas"), "L-F678F1CE", quota, "VPCs per Region", "vpc")
    stubs("ec2").add_response("describe_vpcs", {"Vpcs": [{"VpcId": f"vpc-{i}"}
                                                         for i in range(vpcs)]}, {})
    expect_stack(stubs("cloudformation"), stack)
    result = run(ctx, title_of(capacity.check_vpcs))
    assert result.status is status, case
    assert fragment in text(result)


def test_vpc_quota_without_permission_is_could_not_check(stubs):
    ctx = context(stubs)
    expect_quota(stubs("service-quotas"), "L-F678F1CE", None, "", "vpc", error="AccessDenied")
    assert run(ctx, title_of(capacity.check_vpcs)).status is Status.UNKNOWN


@pytest.mark.parametrize("case, env, quota, allocated, status, fragments", [
    ("dev: one NAT gateway", "dev", 5, 4, Status.OK, ["NatGatewayMode=single", "1 more"]),
    ("prod: one per AZ, too few left", "prod", 5, 4, Status.FAILED,
     ["NatGatewayMode=per-az", "2 more", "--quota-code L-0263D0A3 --desired-value 6",
      "NatGatewayMode=single in params/prod.json"]),
])
def test_elastic_ips(stubs, case, env, quota, allocated, status, fragments):
    ctx = context(stubs, env=env)
    expect_quota(stubs("service-quotas"), "L-0263D0A3", quota, "EC2-VPC Elastic IPs")
    stubs("ec2").add_response("describe_addresses", {"Addresses": [
        {"AllocationId": f"eipalloc-{i}"} for i in range(allocated)]}, {})
    expect_stack(stubs("cloudformation"), False, name=f"llm-api-{env}")
    result = run(ctx, title_of(capacity.check_elastic_ips))
    assert result.status is status, case
    for fragment in fragments:
        assert fragment in text(result), (case, text(result))


def test_elastic_ips_unreadable_is_could_not_check(stubs):
    ctx = context(stubs)
    expect_quota(stubs("service-quotas"), "L-0263D0A3", 5, "EC2-VPC Elastic IPs")
    stubs("ec2").add_client_error("describe_addresses", "UnauthorizedOperation")
    result = run(ctx, title_of(capacity.check_elastic_ips))
    assert result.status is Status.UNKNOWN and "ec2:DescribeAddresses" in text(result)


# ---------------------------------------------------------------------------------------------
# Instance type offered in every AZ
# ---------------------------------------------------------------------------------------------

OFFERINGS = {"LocationType": "availability-zone",
             "Filters": [{"Name": "instance-type", "Values": ["g5.xlarge"]}]}


@pytest.mark.parametrize("case, zones, offered, status, fragments", [
    ("both offered", "us-east-1a,us-east-1b", ["us-east-1a", "us-east-1b", "us-east-1c"],
     Status.OK, ["offered in us-east-1a, us-east-1b, us-east-1c"]),
    ("one AZ lacks it", "us-east-1a,us-east-1e", ["us-east-1a", "us-east-1b"], Status.FAILED,
     ["g5.xlarge is not offered in us-east-1e", '"AvailabilityZones=us-east-1a,us-east-1b"']),
    ("too few AZs offer it", "us-east-1a,us-east-1e", ["us-east-1a"], Status.FAILED,
     ["choose another InstanceType"]),
])
def test_zone_offerings(stubs, case, zones, offered, status, fragments):
    ctx = context(stubs, AvailabilityZones=zones)
    stubs("ec2").add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": "g5.xlarge", "LocationType": "availability-zone", "Location": z}
        for z in offered]}, OFFERINGS)
    result = run(ctx, title_of(capacity.check_zone_offerings))
    assert result.status is status, case
    for fragment in fragments:
        assert fragment in text(result), (case, text(result))


def test_zone_offerings_unreadable_is_could_not_check(stubs):
    ctx = context(stubs)
    stubs("ec2").add_client_error("describe_instance_type_offerings", "RequestLimitExceeded",
                                  expected_params=OFFERINGS)
    assert run(ctx, title_of(capacity.check_zone_offerings)).status is Status.UNKNOWN


# ---------------------------------------------------------------------------------------------
# Runner, verdict, CLI
# ---------------------------------------------------------------------------------------------

def test_every_check_prints_found_needed_and_fix_lines():
    result = Result("X", Status.FAILED, "found it", "need it", ["do this", "or that"])
    assert result.lines() == ["[FAILED]          X", f"{'':<20}found:  found it",
                              f"{'':<20}needed: need it", f"{'':<20}fix:    do this",
                              f"{'':<20}{'':<8}or that"]


def test_an_aws_error_outside_the_guarded_calls_is_could_not_check(stubs):
    from botocore.exceptions import ClientError

    def raises(ctx, title):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "X")

    result = runner.run_check(context(stubs), "raw", raises)
    assert result.status is Status.UNKNOWN


OK, FAIL, UNK = (Result("c", s) for s in (Status.OK, Status.FAILED, Status.UNKNOWN))


@pytest.mark.parametrize("results, strict, passed, warning", [
    ([OK, OK], False, True, False),
    ([OK, FAIL], False, False, False),
    ([OK, UNK], False, True, True),
    ([OK, UNK], True, False, True),
    ([FAIL, UNK], False, False, True),
])
def test_verdict(results, strict, passed, warning):
    verdict, lines = runner.verdict("dev", results, strict)
    assert verdict is passed
    assert any(line.startswith("WARNING") for line in lines) is warning
    assert lines[-1].endswith("passed") is passed


def test_cli_bad_parameter_is_one_line_with_the_fix(capsys):
    assert cli.main(["dev", "--parameter", "nokey"], aws=Aws(clients={"region": REGION})) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--parameter 'nokey' is not KEY=VALUE" in err[0]


def test_cli_unknown_environment_is_one_line_with_the_fix(capsys):
    assert cli.main(["nope"], aws=Aws(clients={"region": REGION})) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no params file for environment 'nope'" in err[0]
    assert "copy dev.json" in err[0]
