"""tools.preflight: the Spot G/VT vCPU quota (SpotInstances=true), against stubbed AWS responses
(botocore Stubber: each case pins the exact read-only calls, an unexpected call fails)."""

from __future__ import annotations

import pytest

from stacks.gpu import spot_alternatives
from tests.tools.preflight_support import context, run, text, title_of
from tests.tools.test_preflight import RUNNING, expect_quota, expect_types, instance
from tools.preflight import capacity
from tools.preflight.core import Status

SPOT_NAME = "All G and VT Spot Instance Requests"
CODE = "L-3819A6DF"



def title() -> str:
    return title_of(capacity.check_spot_gpu_quota)


def test_spot_off_needs_no_spot_quota_and_makes_no_call(stubs):
    result = run(context(stubs, SpotInstances="false"), title())  # any call would fail
    assert result.status is Status.OK and "On-Demand instances only" in text(result)


# dev: AsgMaxSize 2, InstanceType g5.xlarge (4 vCPUs), Spot alternative g5.2xlarge (8 vCPUs):
# (2 + 1 roll surge) x 8 = 24 vCPUs.
@pytest.mark.parametrize("case, quota, running, status, expected", [
    ("quota covers the larger override", 24, [], Status.OK,
     ["quota 24 vCPUs (All G and VT Spot Instance Requests)",
      "24 vCPUs = (AsgMaxSize 2 + 1 for a `make roll` surge) x 8 vCPUs (g5.2xlarge, the "
      "largest of g5.2xlarge, g5.xlarge)"]),
    ("new account: Spot quota 0", 0, [], Status.FAILED,
     ["quota 0 vCPUs", "aws service-quotas request-service-quota-increase --service-code ec2 "
      f"--quota-code {CODE} --desired-value 24 --region us-east-1", "SpotInstances=false"]),
    ("other Spot G instances use it; On-Demand, own and standard ones do not", 24,
     [instance("g4dn.xlarge", lifecycle="spot"), instance("g5.xlarge"),
      instance("m5.large", lifecycle="spot"),
      instance("g5.2xlarge", lifecycle="spot", Project="llm-api", Environment="dev")],
     Status.FAILED, ["4 in use by other running G/VT Spot instances", "--desired-value 28"]),
    ("enough with another Spot instance of a known type", 32,
     [instance("g5.2xlarge", lifecycle="spot")], Status.OK, ["8 in use", "24 free"]),
])
def test_spot_gpu_quota(stubs, case, quota, running, status, expected):
    ctx = context(stubs, SpotInstances="true")
    ec2, sq = stubs("ec2"), stubs("service-quotas")
    assert spot_alternatives()["g5.xlarge"] == "g5.2xlarge"
    expect_types(ec2, {"g5.xlarge": 4, "g5.2xlarge": 8})
    expect_quota(sq, CODE, quota, SPOT_NAME)
    ec2.add_response("describe_instances",
                     {"Reservations": [{"Instances": running}] if running else []}, RUNNING)
    counted = {i["InstanceType"] for i in running if capacity.GPU_FAMILY.match(i["InstanceType"])
               and i.get("InstanceLifecycle") == "spot" and not i["Tags"]}
    if counted - {"g5.xlarge", "g5.2xlarge"}:  # types the check does not know yet
        expect_types(ec2, {k: 4 for k in counted - {"g5.xlarge", "g5.2xlarge"}})
    result = run(ctx, title())
    assert result.status is status, (case, text(result))
    for fragment in expected:
        assert fragment in text(result), (case, text(result))


@pytest.mark.parametrize("answered_name", [
    "Running On-Demand G and VT instances",  # the On-Demand quota under the Spot code
    "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
])
def test_a_code_that_answers_another_quota_is_never_ok(stubs, answered_name):
    ctx = context(stubs, SpotInstances="true")
    expect_types(stubs("ec2"), {"g5.xlarge": 4, "g5.2xlarge": 8})
    expect_quota(stubs("service-quotas"), CODE, 10_000, answered_name)
    result = run(ctx, title())
    assert result.status is Status.UNKNOWN
    assert "not the G and VT Spot quota" in text(result)


def test_a_type_without_a_spot_alternative_is_checked_alone(stubs):
    # The root Rule refuses Spot for such a type; preflight still reports the quota it needs.
    ctx = context(stubs, SpotInstances="true", InstanceType="g4dn.12xlarge")
    assert "g4dn.12xlarge" not in spot_alternatives()
    ec2, sq = stubs("ec2"), stubs("service-quotas")
    expect_types(ec2, {"g4dn.12xlarge": 48})
    expect_quota(sq, CODE, 0, SPOT_NAME)
    ec2.add_response("describe_instances", {"Reservations": []}, RUNNING)
    result = run(ctx, title())
    assert result.status is Status.FAILED and "--desired-value 144" in text(result)
