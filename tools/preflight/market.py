"""How many of the GPU group's instances can be On-Demand and how many Spot, read from the
committed templates with this deploy's values (no AWS call).

The Auto Scaling group (templates/cluster.json, logical ID AutoScalingGroup) has either a
LaunchTemplate (every instance On-Demand) or a MixedInstancesPolicy whose InstancesDistribution
splits the group: "OnDemandBaseCapacity: The minimum amount of the Auto Scaling group's capacity
that must be fulfilled by On-Demand Instances ... Default: 0" and
"OnDemandPercentageAboveBaseCapacity: Controls the percentages of On-Demand Instances and Spot
Instances for your additional capacity beyond OnDemandBaseCapacity ... Default: 100"
(https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstancesDistribution.html).
Either market may launch any type of the policy's Overrides (On-Demand in the overrides'
priority order, Spot by the allocation strategy: https://docs.aws.amazon.com/autoscaling/ec2/
userguide/allocation-strategies.html), so a quota counts every instance at the largest type.

The group's properties use Fn::If on the cluster's Conditions and Fn::FindInMap; this module
resolves exactly those, plus Ref to a parameter (root's value for it, or the cluster template's
Default). A value it cannot resolve (a resource attribute, another function) is an error, never
a guess: the quota checks then say "could not check".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from tools.preflight.core import CheckUnavailable, Context

CLUSTER_TEMPLATE = "cluster.json"
ROOT_TEMPLATE = "root.json"
GROUP = "AutoScalingGroup"  # logical ID in stacks/cluster.py (logical IDs are API)
DEFAULT_BASE = 0  # API_InstancesDistribution defaults, quoted above
DEFAULT_PERCENT = 100

_NO_VALUE = object()  # Ref AWS::NoValue: the property is absent


class _Unresolved:
    def __init__(self, what: object):
        self.what = what

    def __repr__(self) -> str:
        return json.dumps(self.what, sort_keys=True)


@dataclass(frozen=True)
class Markets:
    """The purchase options of the group for this deploy's values."""

    mixed: bool  # a MixedInstancesPolicy applies (else every instance is On-Demand)
    base: int  # OnDemandBaseCapacity
    percent: int  # OnDemandPercentageAboveBaseCapacity
    types: tuple[str, ...]  # the policy's override types (empty: the launch template's type)

    def on_demand(self, capacity: int) -> int:
        """On-Demand instances among `capacity`. A fraction of an instance above the base is
        counted as a whole On-Demand instance: the pages cited above do not say how Auto
        Scaling rounds, and for a quota the larger number is the safe side."""
        if not self.mixed:
            return capacity
        base = min(capacity, self.base)
        return base + math.ceil((capacity - base) * self.percent / 100)

    def spot(self, capacity: int) -> int:
        return capacity - self.on_demand(capacity)

    def describe(self) -> str:
        if not self.mixed:
            return (f"no mixed instances policy ({CLUSTER_TEMPLATE}): the group launches "
                    "On-Demand instances only")
        return (f"mixed instances policy ({CLUSTER_TEMPLATE}): OnDemandBaseCapacity {self.base}, "
                f"OnDemandPercentageAboveBaseCapacity {self.percent}")


class _Resolver:
    def __init__(self, template: dict, values: dict[str, str]):
        self.template = template
        self.values = values

    def condition(self, name: str) -> bool:
        found = self.template.get("Conditions", {}).get(name)
        if found is None:
            raise CheckUnavailable(f"{CLUSTER_TEMPLATE} has no Condition {name}",
                                   "run `make generate` (the templates may be stale)")
        return self.truth(found)

    def truth(self, node) -> bool:
        (key, arg), = node.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = (self.value(item) for item in arg)
            if isinstance(left, _Unresolved) or isinstance(right, _Unresolved):
                raise CheckUnavailable(f"{CLUSTER_TEMPLATE}: cannot evaluate {node}",
                                       "report this: tools/preflight/market.py resolves only "
                                       "parameters, Fn::If and Fn::FindInMap")
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.truth(arg[0])
        if key == "Fn::And":
            return all(self.truth(item) for item in arg)
        if key == "Fn::Or":
            return any(self.truth(item) for item in arg)
        raise CheckUnavailable(f"{CLUSTER_TEMPLATE}: cannot evaluate condition {node}")

    def value(self, node):
        if isinstance(node, list):
            return [item for item in (self.value(i) for i in node) if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                return self.values[arg] if arg in self.values else _Unresolved(node)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.value(when_true if self.condition(name) else when_false)
            if key == "Fn::FindInMap":
                mapping, first, second = (self.value(item) for item in arg)
                try:
                    return self.template["Mappings"][mapping][first][second]
                except (KeyError, TypeError):
                    return _Unresolved(node)
            if key.startswith("Fn::"):
                return _Unresolved(node)
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items())
                if v is not _NO_VALUE}


def cluster_values(ctx: Context, root: dict, cluster: dict) -> dict[str, str]:
    """The cluster stack's parameter values: what root passes (a Ref to a root parameter is
    this deploy's value of it), else the cluster template's Default."""
    stack = next((r for r in root.get("Resources", {}).values()
                  if r.get("Type") == "AWS::CloudFormation::Stack"
                  and r.get("Properties", {}).get("TemplateURL") == CLUSTER_TEMPLATE), None)
    if stack is None:
        raise CheckUnavailable(f"{ROOT_TEMPLATE} has no nested stack of {CLUSTER_TEMPLATE}",
                               "run `make generate` (the templates may be stale)")
    passed = stack["Properties"].get("Parameters", {})
    values = {}
    for name, declared in cluster.get("Parameters", {}).items():
        given = passed.get(name)
        if isinstance(given, dict) and set(given) == {"Ref"}:
            values[name] = ctx.value(given["Ref"])
        elif isinstance(given, (str, int, float)):
            values[name] = str(given)
        elif given is None and "Default" in declared:
            values[name] = str(declared["Default"])
    return values


def _number(value, what: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CheckUnavailable(f"{CLUSTER_TEMPLATE}: {what} is {value!r}, not a number",
                               "report this: tools/preflight/market.py cannot resolve it") from None


def markets(ctx: Context) -> Markets:
    """The group's purchase options as this deploy's values make them."""
    try:
        root = json.loads(ctx.target.template(ROOT_TEMPLATE).read_text())
        cluster = json.loads(ctx.target.template(CLUSTER_TEMPLATE).read_text())
    except Exception as error:  # DeployError (no file) or invalid JSON
        raise CheckUnavailable(f"cannot read the templates: {getattr(error, 'message', error)}",
                               "run `make generate`") from None
    group = cluster.get("Resources", {}).get(GROUP, {})
    if group.get("Type") != "AWS::AutoScaling::AutoScalingGroup":
        raise CheckUnavailable(f"{CLUSTER_TEMPLATE} has no Auto Scaling group {GROUP}",
                               "report this: the logical ID in tools/preflight/market.py is wrong")
    resolver = _Resolver(cluster, cluster_values(ctx, root, cluster))
    properties = group.get("Properties", {})
    policy = resolver.value(properties.get("MixedInstancesPolicy", {"Ref": "AWS::NoValue"}))
    if policy is _NO_VALUE:  # the launch template alone: its InstanceType, On-Demand
        return Markets(mixed=False, base=0, percent=100, types=())
    if not isinstance(policy, dict):
        raise CheckUnavailable(f"{CLUSTER_TEMPLATE}: {GROUP}.MixedInstancesPolicy is {policy!r}")
    distribution = policy.get("InstancesDistribution", {})
    overrides = policy.get("LaunchTemplate", {}).get("Overrides", [])
    types = [o.get("InstanceType") for o in overrides if isinstance(o, dict)]
    if any(not isinstance(kind, str) for kind in types):
        raise CheckUnavailable(f"{CLUSTER_TEMPLATE}: an override's InstanceType is unresolved "
                               f"({types})", "report this: tools/preflight/market.py cannot "
                               "resolve it")
    return Markets(mixed=True,
                   base=_number(distribution.get("OnDemandBaseCapacity"), "OnDemandBaseCapacity",
                                DEFAULT_BASE),
                   percent=_number(distribution.get("OnDemandPercentageAboveBaseCapacity"),
                                   "OnDemandPercentageAboveBaseCapacity", DEFAULT_PERCENT),
                   types=tuple(sorted(set(types))))
