"""The project's own reading of a diff: one line per finding that a reviewer must not miss.

Input is what @aws-cdk/cloudformation-diff computed (change impact per resource, IAM statement and
security-group rule changes, parameter and output changes) plus the two renderings; the rules here
decide which of those changes matter for this stack and say why. The engine itself is not
re-implemented: no rule here decides on its own whether a property change replaces a resource.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from app.contract import OLLAMA_PORT  # the sidecar's port: never mapped, loopback only
from tools.review import budget

# Kinds, in the order the report lists them.
KINDS = ("render", "replace", "delete", "retained", "iam", "network", "parameter", "output",
         "policy", "timeout", "rollout")

# Resources whose identity or data matters, and what their replacement means.
IDENTITY = {
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "a new load balancer with a new DNS name",
    "AWS::ECS::Service": "a new service: every task restarts",
    "AWS::EC2::VPC": "a new VPC: everything inside it is rebuilt",
    "AWS::EC2::Subnet": "a new subnet ID and IP range: instances and tasks in it move",
    "AWS::EC2::SecurityGroup": "a new group ID: every rule and attachment naming it changes",
    "AWS::Logs::LogGroup": "a new log group: the history stays in the old one",
    "AWS::KMS::Key": "a new key: what the old key encrypted still needs the old key",
    "AWS::SecretsManager::Secret": "a new secret with a newly generated value: every API key changes",
    "AWS::S3::Bucket": "a new bucket: the access logs so far stay in the old one",
    "AWS::ECR::Repository": "a new repository: the images must be pushed again",
}
# Properties that hold a resource's custom name, by type.
NAME_PROPERTY = {
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "Name", "AWS::ECS::Service": "ServiceName",
    "AWS::Logs::LogGroup": "LogGroupName", "AWS::SecretsManager::Secret": "Name",
    "AWS::S3::Bucket": "BucketName", "AWS::ECR::Repository": "RepositoryName",
    "AWS::EC2::SecurityGroup": "GroupName",
}
REPLACING = ("WILL_REPLACE", "MAY_REPLACE")


@dataclass(frozen=True)
class Finding:
    env: str
    layer: str  # the template's file name without .json
    kind: str  # one of KINDS
    text: str


def _type(resource: dict) -> str:
    return resource.get("newType") or resource.get("oldType") or "?"


def resource_findings(env: str, layer: str, result: dict, old: dict, new: dict) -> list[Finding]:
    """Replacements, deletions, retained leftovers and policy changes of one layer."""
    out = []
    added = {(_type(r)): r["logicalId"] for r in result["resources"] if r["isAddition"]}
    for change in result["resources"]:
        lid, type_, impact = change["logicalId"], _type(change), change["impact"]
        what = f"{type_.split('::', 1)[1]} {lid}"
        if impact in REPLACING and type_ in IDENTITY:
            causes = [p["name"] for p in change["properties"] if p.get("impact") in REPLACING]
            verb = "is replaced" if impact == "WILL_REPLACE" else "may be replaced"
            text = f"{what} {verb} ({', '.join(causes) or 'see diff'}): {IDENTITY[type_]}"
            name_prop = NAME_PROPERTY.get(type_)
            old_props = old.get("Resources", {}).get(lid, {}).get("Properties", {})
            if name_prop and name_prop in old_props and name_prop not in causes:
                text += (f"; it has a custom {name_prop}, so CloudFormation cannot create the "
                         f"replacement beside it: the update fails unless {name_prop} changes too")
            # "If deletion protection is enabled, you can't delete the load balancer" (https://docs.
            # aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html)
            if budget.attribute(old_props, "LoadBalancerAttributes",
                                "deletion_protection.enabled") in ("true", True):
                text += ("; the old one has deletion protection on, so CloudFormation's cleanup "
                         "cannot delete it: it stays behind until protection is turned off")
            out.append(Finding(env, layer, "replace", text))
        elif impact == "WILL_DESTROY" and type_ in IDENTITY:
            renamed = f" ({added[type_]} is added: a renamed logical ID)" if type_ in added else ""
            out.append(Finding(env, layer, "delete",
                               f"{what} is deleted with its data{renamed}"))
        elif impact == "WILL_ORPHAN":
            props = old.get("Resources", {}).get(lid, {}).get("Properties", {})
            name = props.get(NAME_PROPERTY.get(type_, ""), "")
            left = f" {name!r}" if isinstance(name, str) and name else ""
            renamed = f"; {added[type_]} is added: a renamed logical ID" if type_ in added else ""
            out.append(Finding(env, layer, "retained",
                               f"{what} leaves the stack but stays in the account (DeletionPolicy "
                               f"{change['oldDeletionPolicy']}): {type_}{left} remains, billed "
                               f"and unmanaged; a new one with the same name fails to create "
                               f"until it is deleted by hand{renamed}"))
        if type_ == "AWS::EC2::LaunchTemplate" and impact == "WILL_UPDATE" and _protected(new):
            # A new launch template version reaches new instances only; running ones keep theirs
            # (https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-instance-refresh.html),
            # and ours are protected from scale-in, so they are not replaced on their own.
            changed = ", ".join(p["name"] for p in change["properties"])
            out.append(Finding(env, layer, "rollout",
                               f"{what} changes ({changed}): only new instances get it; running "
                               "instances are protected from scale-in and keep the old version "
                               "until replaced (instance refresh, or scale out and in)"))
        for other in change["other"]:
            if other["name"] in ("DeletionPolicy", "UpdateReplacePolicy") and not (
                    change["isAddition"] or change["isRemoval"]):
                out.append(Finding(env, layer, "policy",
                                   f"{what} {other['name']} {other['old'] or '(default: Delete)'}"
                                   f" -> {other['new'] or '(default: Delete)'}"))
    return out


def _protected(template: dict) -> bool:
    return any(r.get("Type") == "AWS::AutoScaling::AutoScalingGroup"
               and (r.get("Properties") or {}).get("NewInstancesProtectedFromScaleIn") in (True, "true")
               for r in (template.get("Resources") or {}).values())


def parsed(items: list[dict]) -> list[dict]:
    """The engine wraps each statement as {"type": "parsed", "value": ...} or "unparseable"."""
    return [item["value"] if item.get("type") == "parsed" else {"unparsed": item.get("repr", item)}
            for item in items]


def _values(targets: dict | None) -> set[str]:
    return set((targets or {}).get("values", []))


def iam_findings(env: str, layer: str, result: dict) -> list[Finding]:
    """New actions, wildcards, broader resources, new principals, attached managed policies."""
    iam = {key: parsed(items) for key, items in result["iam"].items()}
    removed = iam["statementRemovals"]
    old_actions = set().union(*(_values(s.get("actions")) for s in removed))
    old_resources = set().union(*(_values(s.get("resources")) for s in removed))
    old_principals = set().union(*(_values(s.get("principals")) for s in removed))
    out = []
    for statement in iam["statementAdditions"]:
        if "unparsed" in statement:
            out.append(Finding(env, layer, "iam", f"IAM statement added that the engine cannot "
                                                  f"read: {statement['unparsed']}"))
            continue
        if statement.get("effect") != "Allow":
            continue
        actions, resources = _values(statement.get("actions")), _values(statement.get("resources"))
        principals = _values(statement.get("principals"))
        parts = []
        if wild := sorted(a for a in actions - old_actions if "*" in a):
            parts.append(f"action wildcard {', '.join(wild)}")
        if new := sorted(a for a in actions - old_actions if "*" not in a):
            parts.append(f"new actions {', '.join(new)}")
        if broader := sorted(r for r in resources - old_resources if "*" in r):
            parts.append(f"broader resources {', '.join(broader)}")
        elif new_res := sorted(resources - old_resources):
            parts.append(f"new resources {', '.join(new_res)}")
        if new_principals := sorted(principals - old_principals):
            parts.append(f"new principal {', '.join(new_principals)}")
        if parts:
            sid = f" {statement['sid']}" if statement.get("sid") else ""
            out.append(Finding(env, layer, "iam", f"IAM statement{sid} widens: {'; '.join(parts)}"))
    for policy in iam["managedPolicyAdditions"]:
        out.append(Finding(env, layer, "iam", f"managed policy {policy.get('managedPolicyArn')} "
                                              f"attached to {policy.get('identityArn')}"))
    return out


def _ports(rule: dict) -> str:
    if rule.get("ipProtocol") in ("-1", -1):
        return "all traffic"
    low, high = rule.get("fromPort"), rule.get("toPort")
    return f"{rule.get('ipProtocol')} {low}" if low == high else f"{rule.get('ipProtocol')} {low}-{high}"


def _reaches(rule: dict, port: int) -> bool:
    if rule.get("ipProtocol") in ("-1", -1):
        return True
    low, high = rule.get("fromPort"), rule.get("toPort")
    return low is not None and high is not None and low <= port <= high


def _peer(rule: dict) -> str:
    peer = rule.get("peer") or {}
    return peer.get("ip") or peer.get("securityGroupId") or peer.get("prefixListId") or "?"


def _prefix(rule: dict) -> int | None:
    peer = rule.get("peer") or {}
    if peer.get("kind") != "cidr-ip":
        return None
    return ipaddress.ip_network(peer["ip"], strict=False).prefixlen


def network_findings(env: str, layer: str, result: dict, names: dict[str, str]) -> list[Finding]:
    """New ports, wider sources, anything reaching Ollama; a load balancer turned public."""
    out = []
    groups = result["securityGroups"]
    for direction, added_key, removed_key in (("ingress", "ingressRuleAdditions", "ingressRuleRemovals"),
                                              ("egress", "egressRuleAdditions", "egressRuleRemovals")):
        removed = groups.get(removed_key, [])
        for rule in groups.get(added_key, []):
            group = names.get(rule.get("groupId"), rule.get("groupId"))
            side = "from" if direction == "ingress" else "to"
            where = f"{direction} {_ports(rule)} {side} {_peer(rule)} on {group}"
            same_ports = [r for r in removed if r.get("groupId") == rule.get("groupId")
                          and _ports(r) == _ports(rule)]
            reasons = []
            if _reaches(rule, OLLAMA_PORT):
                reasons.append(f"reaches the Ollama port {OLLAMA_PORT} (no auth on Ollama)")
            if direction == "ingress" and not same_ports:
                reasons.append("a new port")
            elif direction == "ingress":
                new_prefix = _prefix(rule)
                old_prefixes = [_prefix(r) for r in same_ports]
                if new_prefix is not None and all(p is None or p > new_prefix for p in old_prefixes):
                    was = ", ".join(_peer(r) for r in same_ports)
                    reasons.append(f"a wider source than before ({was})")
            if reasons:
                out.append(Finding(env, layer, "network", f"{where}: {'; '.join(reasons)}"))
    for change in result["resources"]:
        if _type(change) != "AWS::ElasticLoadBalancingV2::LoadBalancer":
            continue
        for prop in change["properties"]:
            if prop["name"] == "Scheme" and prop.get("new") == "internet-facing":
                out.append(Finding(env, layer, "network",
                                   f"LoadBalancer {change['logicalId']} scheme {prop.get('old')} "
                                   "-> internet-facing: reachable from the internet"))
    return out


def output_findings(env: str, layer: str, result: dict) -> list[Finding]:
    return [Finding(env, layer, "output", f"output {item['name']} removed: whatever reads it "
                                          "(describe-stacks, tools/deploy, other stacks) breaks")
            for item in result["outputs"] if item["new"] is None]


def timeout_findings(env: str, layer: str, old: dict, new: dict) -> list[Finding]:
    before, after = budget.values(old), budget.values(new)
    return [Finding(env, layer, "timeout",
                    f"timeout budget: {name} {before.get(name, '(none)')} -> {after.get(name, '(none)')}"
                    f" (app/contract.py TimeoutBudget derives it; check the whole chain)")
            for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]


def layer_findings(env: str, file_name: str, result: dict, old: dict, new: dict,
                   names: dict[str, str]) -> list[Finding]:
    layer = file_name.removesuffix(".json")
    return (resource_findings(env, layer, result, old, new) + iam_findings(env, layer, result)
            + network_findings(env, layer, result, names) + output_findings(env, layer, result)
            + timeout_findings(env, layer, old, new))


def sort_key(finding: Finding) -> tuple:
    return (finding.env, finding.layer, KINDS.index(finding.kind), finding.text)
