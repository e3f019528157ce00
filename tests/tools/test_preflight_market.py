"""tools.preflight: the On-Demand and Spot G/VT vCPU quotas size each market from the GPU
group's purchase options as templates/cluster.json declares them (tools/preflight/market.py),
against stubbed AWS responses (botocore Stubber: an unexpected call fails the test)."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from tests.cfn import REPO
from tests.tools.preflight_support import context, run, text, title_of
from tests.tools.test_preflight import GVT, RUNNING, expect_quota, expect_types
from tools.preflight import capacity, market
from tools.preflight.core import Status

SPOT_NAME = "All G and VT Spot Instance Requests"
TEMPLATES = REPO / "templates"


def committed_cluster() -> dict:
    return json.loads((TEMPLATES / market.CLUSTER_TEMPLATE).read_text())


def spot_distribution(cluster: dict) -> dict:
    """The InstancesDistribution of the group's SpotOn branch, as committed."""
    policy = cluster["Resources"][market.GROUP]["Properties"]["MixedInstancesPolicy"]
    condition, when_true, _ = policy["Fn::If"]
    assert cluster["Conditions"][condition] == {"Fn::Equals": [{"Ref": "SpotInstances"}, "true"]}
    return when_true["InstancesDistribution"]


def with_distribution(tmp_path, distribution: dict | None):
    """A copy of the committed templates whose Spot branch has another InstancesDistribution
    (None: none at all, so the API's defaults apply)."""
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATES, directory)
    cluster = committed_cluster()
    policy = cluster["Resources"][market.GROUP]["Properties"]["MixedInstancesPolicy"]["Fn::If"][1]
    if distribution is None:
        del policy["InstancesDistribution"]
    else:
        policy["InstancesDistribution"] = distribution
    (directory / market.CLUSTER_TEMPLATE).write_text(json.dumps(cluster))
    return directory


def test_a_spot_only_group_needs_no_on_demand_quota_and_makes_no_call(stubs):
    """A new account (On-Demand G/VT quota 0) with SpotInstances=true must not be refused by
    the On-Demand check: the committed policy launches no On-Demand instance."""
    ctx = context(stubs, SpotInstances="true")  # no stubbed response: any AWS call fails
    committed = spot_distribution(committed_cluster())
    capacity_ = 2 + capacity.roll_surge(2)  # dev: AsgMaxSize 2
    assert market.markets(ctx).on_demand(capacity_) == 0
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is Status.OK, text(result)
    for fragment in (f"OnDemandBaseCapacity {committed['OnDemandBaseCapacity']}",
                     "OnDemandPercentageAboveBaseCapacity "
                     f"{committed['OnDemandPercentageAboveBaseCapacity']}",
                     "none of (AsgMaxSize 2 + 1 for a `make roll` surge) instances is On-Demand",
                     "0 On-Demand G/VT vCPUs"):
        assert fragment in text(result), text(result)


# dev: AsgMaxSize 2 + 1 surge = 3 instances over g5.xlarge (4 vCPUs) and its Spot alternative
# g5.2xlarge (8 vCPUs): either market counts at 8. On-Demand = min(3, base) + the percentage of
# the rest rounded up (API_InstancesDistribution; defaults 0 and 100).
@pytest.mark.parametrize("distribution, on_demand", [
    ({"OnDemandBaseCapacity": 1, "OnDemandPercentageAboveBaseCapacity": 0}, 1),
    ({"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 50}, 2),  # 1.5 -> 2
    ({"OnDemandBaseCapacity": 2, "OnDemandPercentageAboveBaseCapacity": 50}, 3),
    ({"OnDemandBaseCapacity": 5, "OnDemandPercentageAboveBaseCapacity": 0}, 3),
    ({"SpotAllocationStrategy": "capacity-optimized"}, 3),  # both defaults
    (None, 3),
])
def test_each_market_is_sized_from_the_templates_distribution(stubs, tmp_path, distribution,
                                                              on_demand):
    ctx = context(stubs, SpotInstances="true")
    ctx.target.templates_dir = with_distribution(tmp_path, distribution)
    ec2, sq = stubs("ec2"), stubs("service-quotas")
    sizes = {"g5.xlarge": 4, "g5.2xlarge": 8}
    expect_types(ec2, sizes)
    expect_quota(sq, capacity.GPU_QUOTA[1], 0, GVT)
    ec2.add_response("describe_instances", {"Reservations": []}, RUNNING)
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is Status.FAILED, text(result)
    assert f"{on_demand * 8} vCPUs = {on_demand} On-Demand instance(s)" in text(result)
    assert f"--desired-value {on_demand * 8} " in text(result)

    spot = 3 - on_demand
    if spot:
        expect_types(ec2, sizes)
        expect_quota(sq, capacity.SPOT_GPU_QUOTA[1], 0, SPOT_NAME)
        ec2.add_response("describe_instances", {"Reservations": []}, RUNNING)
    result = run(ctx, title_of(capacity.check_spot_gpu_quota))
    assert result.status is (Status.FAILED if spot else Status.OK), text(result)
    if spot:
        assert f"--desired-value {spot * 8} " in text(result)


@pytest.mark.parametrize("value", [{"Fn::GetAtt": ["Something", "Count"]}, "many"])
def test_a_distribution_it_cannot_resolve_is_could_not_check_never_ok(stubs, tmp_path, value):
    ctx = context(stubs, SpotInstances="true")
    ctx.target.templates_dir = with_distribution(
        tmp_path, {"OnDemandBaseCapacity": value, "OnDemandPercentageAboveBaseCapacity": 0})
    for check in (capacity.check_gpu_quota, capacity.check_spot_gpu_quota):
        result = run(ctx, title_of(check))
        assert result.status is Status.UNKNOWN, text(result)
        assert "OnDemandBaseCapacity" in text(result)


def test_a_condition_it_cannot_evaluate_is_could_not_check(stubs, tmp_path):
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATES, directory)
    cluster = committed_cluster()
    cluster["Conditions"]["SpotOn"] = {"Fn::Equals": [{"Fn::GetAtt": ["X", "Y"]}, "true"]}
    (directory / market.CLUSTER_TEMPLATE).write_text(json.dumps(cluster))
    ctx = context(stubs, SpotInstances="true")
    ctx.target.templates_dir = directory
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is Status.UNKNOWN and "cannot evaluate" in text(result)


def test_the_parameters_reach_the_cluster_the_way_root_passes_them(stubs, tmp_path):
    """A cluster parameter root does not pass takes the cluster's Default; one root passes as
    a Ref takes this deploy's value of that root parameter."""
    ctx = context(stubs, SpotInstances="true")
    root = json.loads((TEMPLATES / market.ROOT_TEMPLATE).read_text())
    cluster = committed_cluster()
    values = market.cluster_values(ctx, root, cluster)
    assert values["SpotInstances"] == "true"
    changed = copy.deepcopy(root)
    stack = next(r for r in changed["Resources"].values()
                 if r["Properties"].get("TemplateURL") == market.CLUSTER_TEMPLATE)
    del stack["Properties"]["Parameters"]["SpotInstances"]
    cluster["Parameters"]["SpotInstances"]["Default"] = "false"
    assert market.cluster_values(ctx, changed, cluster)["SpotInstances"] == "false"
