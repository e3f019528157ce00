"""Capacity checks: the GPU vCPU quota, VPCs, Elastic IPs, and the instance type in every AZ."""

from __future__ import annotations

import math
import re

from botocore.exceptions import ClientError

from stacks import names
from stacks.cluster import SPOT
from tools.deploy.roll import PREFERENCES
from tools.preflight import market
from tools.preflight.core import (
    CheckUnavailable,
    Context,
    Result,
    call,
    failed,
    ok,
    pages,
)

# Service Quotas codes. Verified against the Service Quotas names that GetServiceQuota returns
# (the check refuses an answer whose QuotaName does not match, so a wrong code cannot pass):
#   ec2/L-DB2E81BA "Running On-Demand G and VT instances" (vCPUs), ec2/L-0263D0A3 "EC2-VPC
#   Elastic IPs", vpc/L-F678F1CE "VPCs per Region" (also in moto 5.2.5
#   moto/servicequotas/resources/default_quotas/vpc.py). List them yourself with
#   `aws service-quotas list-service-quotas --service-code ec2`.
GPU_QUOTA = ("ec2", "L-DB2E81BA", "G and VT")
# Spot: "All G and VT Spot Instance Requests" (vCPUs, default 0; the quota names in
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html), code L-3819A6DF as
# ListServiceQuotas prints it (github.com/geyang/jaynes-starter-kit, 02_ec2_docker_guide/setup/
# spot_limit.md at 0e7994c904de90c9d03bd9264452c3337b36e24e, under its older name "All G Spot
# Instance Requests"). The guard wants "G and VT Spot": the Standard Spot quota (L-34B43A08,
# "All Standard (...) Spot Instance Requests") or the On-Demand one can never pass for it.
SPOT_GPU_QUOTA = ("ec2", "L-3819A6DF", "G and VT Spot")
EIP_QUOTA = ("ec2", "L-0263D0A3", "Elastic IP")
VPC_QUOTA = ("vpc", "L-F678F1CE", "VPCs per Region")

# The G and VT quota counts the vCPUs of running On-Demand instances of the G and VT families
# (g4dn, g5, g5g, g6, g6e, gr6, vt1, ...); Spot instances count against a separate quota
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html: "All G and VT
# Spot Instance Requests"; On-Demand: https://docs.aws.amazon.com/ec2/latest/instancetypes/
# ec2-instance-quotas.html). Quotas are in vCPUs, so instances x vCPUs per type.
GPU_FAMILY = re.compile(r"^(g|gr|vt)\d")
COUNTED_STATES = ("pending", "running")

# `make roll` (issue 13, item 5) replaces instances with an instance refresh at minimum healthy
# 100% and maximum healthy above 100%. MaxHealthyPercentage is "the maximum percentage of the
# group that can be in service and healthy, or pending ... when replacing instances", of the
# desired capacity (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/
# API_InstanceMaintenancePolicy.html). `make roll` sets 110% (tools/deploy/roll.py): at the
# group's largest size (AsgMaxSize) it adds ceil(AsgMaxSize x 10%) instances, at least one: one
# spare GPU instance for any AsgMaxSize up to 10.
ROLL_MAX_HEALTHY_PERCENT = PREFERENCES["MaxHealthyPercentage"]


def roll_surge(max_size: int, max_healthy_percent: int = ROLL_MAX_HEALTHY_PERCENT) -> int:
    return max(1, math.ceil(max_size * (max_healthy_percent - 100) / 100))


def quota_value(ctx: Context, quota: tuple[str, str, str]) -> tuple[float, str]:
    """(value, name) of a quota: the applied value, else AWS's default. GetServiceQuota answers
    NoSuchResourceException for a quota whose applied value is not available; the default then
    applies (https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/
    API_GetServiceQuota.html)."""
    service, code, expected = quota
    client = ctx.aws.client("service-quotas")
    try:
        answer = call(client.get_service_quota, "servicequotas:GetServiceQuota",
                      allow=("NoSuchResourceException",), ServiceCode=service, QuotaCode=code)
    except ClientError:  # NoSuchResourceException: no applied value
        answer = call(client.get_aws_default_service_quota,
                      "servicequotas:GetAWSDefaultServiceQuota", ServiceCode=service,
                      QuotaCode=code)
    quota_body = answer.get("Quota") or {}
    name = str(quota_body.get("QuotaName", ""))
    if "Value" not in quota_body:
        raise CheckUnavailable(f"Service Quotas returned no value for {service}/{code}",
                               "look it up in the Service Quotas console")
    if expected.lower() not in name.lower():
        raise CheckUnavailable(f"{service}/{code} is {name!r}, not the {expected} quota",
                               "report this: the quota code in tools/preflight/capacity.py "
                               "is wrong")
    return float(quota_body["Value"]), name


def vcpus_of(ctx: Context, instance_types: set[str]) -> dict[str, int]:
    if not instance_types:
        return {}
    ec2 = ctx.aws.client("ec2")
    found = pages(ec2, "describe_instance_types", "ec2:DescribeInstanceTypes", "InstanceTypes",
                  InstanceTypes=sorted(instance_types))
    return {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"]) for t in found}


def increase_command(ctx: Context, quota: tuple[str, str, str], value: int) -> str:
    service, code, _ = quota
    return (f"aws service-quotas request-service-quota-increase --service-code {service} "
            f"--quota-code {code} --desired-value {value} --region {ctx.region}")


def others_in_use(ctx: Context, spot: bool, known: dict[str, int]) -> int:
    """vCPUs of this account's running G/VT instances of one market (On-Demand or Spot), except
    this environment's own (they are part of what it needs already): the Auto Scaling group
    propagates its Project and Environment tags to the instances it launches
    (stacks/cluster.py, PropagateAtLaunch)."""
    ec2 = ctx.aws.client("ec2")
    reservations = pages(ec2, "describe_instances", "ec2:DescribeInstances", "Reservations",
                         Filters=[{"Name": "instance-state-name",
                                   "Values": list(COUNTED_STATES)}])
    others: dict[str, int] = {}
    for reservation in reservations:
        for instance in reservation.get("Instances", []):
            kind = instance.get("InstanceType", "")
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            own = all(tags.get(k) == v for k, v in ctx.target.tags.items())
            if (GPU_FAMILY.match(kind) and (instance.get("InstanceLifecycle") == "spot") is spot
                    and not own):
                others[kind] = others.get(kind, 0) + 1
    sizes = {**known, **vcpus_of(ctx, set(others) - set(known))}
    return sum(count * sizes.get(kind, 0) for kind, count in others.items())


def group_sizes(ctx: Context, name: str, found: market.Markets
                ) -> tuple[dict[str, int], str] | Result:
    """(vCPUs per type the group may launch, the largest type), or the failed Result naming an
    unknown type. A mixed instances policy launches its overrides' types, else the launch
    template's InstanceType."""
    types = set(found.types) or {ctx.value(names.INSTANCE_TYPE)}
    sizes = vcpus_of(ctx, types)
    unknown = sorted(types - set(sizes))
    if unknown:
        return failed(name, f"EC2 does not know instance type {', '.join(unknown)} in "
                      f"{ctx.region}", "a GPU instance type of this region",
                      f"set InstanceType=<type> in params/{ctx.env}.json (aws ec2 "
                      "describe-instance-types)")
    return sizes, max(sizes, key=lambda kind: (sizes[kind], kind))


def check_gpu_quota(ctx: Context, name: str) -> Result:
    """The On-Demand share of AsgMaxSize + the roll surge (market.py reads it from the group's
    MixedInstancesPolicy; without one every instance is On-Demand) x the vCPUs per instance.
    No On-Demand instance (SpotInstances=true: OnDemandBaseCapacity 0 and 0 % above it) needs
    no On-Demand quota: ok without a call, so a Spot-only account is not refused."""
    max_size = int(ctx.value(names.ASG_MAX_SIZE) or 0)
    surge = roll_surge(max_size)
    found = market.markets(ctx)
    count = found.on_demand(max_size + surge)
    fleet = f"AsgMaxSize {max_size} + {surge} for a `make roll` surge"
    if count == 0:
        return ok(name, f"{SPOT}={ctx.value(SPOT)}: {found.describe()}: none of ({fleet}) "
                  "instances is On-Demand", "0 On-Demand G/VT vCPUs (the Spot quota check "
                  "covers this group)")
    sized = group_sizes(ctx, name, found)
    if isinstance(sized, Result):
        return sized
    sizes, largest = sized
    needed = count * sizes[largest]
    if found.mixed:
        wanted = (f"{needed} vCPUs = {count} On-Demand instance(s) of ({fleet}; "
                  f"{found.describe()}) x {sizes[largest]} vCPUs ({largest}, the largest of "
                  f"{', '.join(sorted(sizes))})")
    else:
        wanted = f"{needed} vCPUs = ({fleet}) x {sizes[largest]} vCPUs ({largest})"
    return vcpu_verdict(ctx, name, GPU_QUOTA, needed, wanted, spot=False, known=sizes,
                        other_fix=f"or lower AsgMaxSize in params/{ctx.env}.json (new accounts "
                                  "start at 0; approval can take a day or more)")


def vcpu_verdict(ctx: Context, name: str, quota: tuple[str, str, str], needed: int, wanted: str,
                 spot: bool, known: dict[str, int], other_fix: str) -> Result:
    """ok when the quota minus other running G/VT instances leaves `needed` vCPUs."""
    limit, quota_name = quota_value(ctx, quota)
    in_use = others_in_use(ctx, spot=spot, known=known)
    found = (f"quota {limit:g} vCPUs ({quota_name}); {in_use} in use by other running G/VT "
             f"{'Spot ' if spot else ''}instances; {limit - in_use:g} free")
    if limit - in_use >= needed:
        return ok(name, found, wanted)
    return failed(name, found, wanted, increase_command(ctx, quota, math.ceil(in_use + needed)),
                  other_fix)


def check_spot_gpu_quota(ctx: Context, name: str) -> Result:
    """The Spot share of AsgMaxSize + the roll surge (market.py: with SpotInstances=true the
    mixed instances policy launches Spot only, over InstanceType and its Spot alternative, the
    policy's overrides). Capacity-optimized may pick either type, so every instance is counted
    at the larger type's vCPUs."""
    max_size = int(ctx.value(names.ASG_MAX_SIZE) or 0)
    surge = roll_surge(max_size)
    found = market.markets(ctx)
    count = found.spot(max_size + surge)
    fleet = f"AsgMaxSize {max_size} + {surge} for a `make roll` surge"
    if count == 0:
        return ok(name, f"{SPOT}={ctx.value(SPOT)}: {found.describe()}", "no Spot quota")
    sized = group_sizes(ctx, name, found)
    if isinstance(sized, Result):
        return sized
    sizes, largest = sized
    needed = count * sizes[largest]
    share = "" if count == max_size + surge else f"{count} Spot instance(s) of "
    wanted = (f"{needed} vCPUs = {share}({fleet}) x {sizes[largest]} vCPUs ({largest}, the "
              f"largest of {', '.join(sorted(sizes))})")
    return vcpu_verdict(ctx, name, SPOT_GPU_QUOTA, needed, wanted, spot=True, known=sizes,
                        other_fix=f"or lower AsgMaxSize, or set {SPOT}=false in params/{ctx.env}"
                                  ".json (Spot quotas start at 0 and are separate from the "
                                  "On-Demand one)")


def check_vpcs(ctx: Context, name: str) -> Result:
    limit, _ = quota_value(ctx, VPC_QUOTA)
    count = len(pages(ctx.aws.client("ec2"), "describe_vpcs", "ec2:DescribeVpcs", "Vpcs"))
    new = 0 if ctx.root_stack_exists() else 1
    found = f"quota {limit:g}, {count} VPC(s) in {ctx.region}"
    wanted = f"{new} more (the network layer's VPC" + (", already created)" if not new else ")")
    if count + new <= limit:
        return ok(name, found, wanted)
    return failed(name, found, wanted, increase_command(ctx, VPC_QUOTA, count + new),
                  "or delete an unused VPC (aws ec2 describe-vpcs)")


def check_elastic_ips(ctx: Context, name: str) -> Result:
    mode = ctx.value(names.NAT_GATEWAY_MODE)
    zones = ctx.zones()
    nat = len(zones) if mode == "per-az" else 1
    limit, _ = quota_value(ctx, EIP_QUOTA)
    count = len(call(ctx.aws.client("ec2").describe_addresses, "ec2:DescribeAddresses")
                .get("Addresses", []))
    new = 0 if ctx.root_stack_exists() else nat
    found = f"quota {limit:g}, {count} allocated in {ctx.region}"
    wanted = (f"{new} more: NatGatewayMode={mode}, one NAT gateway "
              + ("per AZ" if mode == "per-az" else "for all AZs") + f" ({nat} address(es))"
              + ("; the stack exists, its addresses are counted" if not new else ""))
    if count + new <= limit:
        return ok(name, found, wanted)
    fixes = [increase_command(ctx, EIP_QUOTA, count + new),
             "or release unused addresses (aws ec2 describe-addresses)"]
    if mode == "per-az":
        fixes.append(f"or set NatGatewayMode=single in params/{ctx.env}.json (one NAT gateway)")
    return failed(name, found, wanted, *fixes)


def check_zone_offerings(ctx: Context, name: str) -> Result:
    instance_type = ctx.value(names.INSTANCE_TYPE)
    zones = ctx.zones()
    offerings = pages(ctx.aws.client("ec2"), "describe_instance_type_offerings",
                      "ec2:DescribeInstanceTypeOfferings", "InstanceTypeOfferings",
                      LocationType="availability-zone",
                      Filters=[{"Name": "instance-type", "Values": [instance_type]}])
    offered = sorted({o["Location"] for o in offerings})
    missing = [z for z in zones if z not in offered]
    wanted = f"{instance_type} in {', '.join(zones)} (AvailabilityZones in params/{ctx.env}.json)"
    if not missing:
        return ok(name, f"offered in {', '.join(offered)}", wanted)
    keep = [z for z in zones if z in offered]
    spare = [z for z in offered if z not in keep]
    choice = (keep + spare)[:len(zones)]
    found = (f"{instance_type} is not offered in {', '.join(missing)}; offered in "
             f"{', '.join(offered) or 'no AZ of ' + ctx.region}")
    if len(choice) < len(zones):
        return failed(name, found, wanted, f"choose another InstanceType in params/{ctx.env}.json"
                      f": {ctx.region} offers {instance_type} in too few AZs")
    return failed(name, found, wanted,
                  f"params/{ctx.env}.json: \"AvailabilityZones={','.join(choice)}\"")


CHECKS = (
    (f"GPU vCPU quota ({GPU_QUOTA[0]}/{GPU_QUOTA[1]} Running On-Demand G and VT instances)",
     check_gpu_quota),
    (f"GPU Spot vCPU quota ({SPOT_GPU_QUOTA[0]}/{SPOT_GPU_QUOTA[1]} All G and VT Spot Instance "
     "Requests)", check_spot_gpu_quota),
    (f"VPCs per region ({VPC_QUOTA[0]}/{VPC_QUOTA[1]})", check_vpcs),
    (f"Elastic IPs for the NAT gateways ({EIP_QUOTA[0]}/{EIP_QUOTA[1]})", check_elastic_ips),
    ("instance type offered in every AZ", check_zone_offerings),
)
