"""Changes to the committed templates and params files, each with the findings it must produce.

Each case edits a copy of the working tree's templates/params (the way a pull request would) and
lists (environment, layer, kind, words) that the review must report; `quiet` environments must
show no finding and no changed layer; `only` says the listed findings are all there may be.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from app.contract import TIMEOUTS
from tools import params as params_files
from tools.review.sides import Snapshot

Edit = Callable[[dict[str, dict]], None]
# Cases that hold in every environment expect their finding in each params file there is.
ENVS = tuple(params_files.environments())


@dataclass
class Case:
    name: str
    edit: Edit | None = None  # edits templates (file name -> template dict) in place
    params: dict[str, dict[str, str]] = field(default_factory=dict)  # env -> values to set
    expect: list[tuple[str, str, str, str]] = field(default_factory=list)
    quiet: tuple[str, ...] = ()
    only: bool = False
    untouched: dict[str, str] = field(default_factory=dict)  # env -> a changed template with no effect
    before: dict[str, dict[str, str]] = field(default_factory=dict)  # env -> values on the base side


def _with_params(snapshot: Snapshot, label: str, values_by_env: dict[str, dict[str, str]]) -> Snapshot:
    params = dict(snapshot.params)
    for env, values in values_by_env.items():
        merged = params_files.parse(params[env], env)
        merged.update(values)
        params[env] = params_files.render(merged)
    return Snapshot(label=label, templates=snapshot.templates, params=params)


def sides(base: Snapshot, case: Case) -> tuple[Snapshot, Snapshot]:
    """(base side, changed side) of a case."""
    before = _with_params(base, "base", case.before) if case.before else base
    templates = {name: json.loads(text) for name, text in before.templates.items()}
    if case.edit:
        case.edit(templates)
    after = Snapshot(label=case.name, params=before.params,
                     templates={n: json.dumps(t, indent=2, sort_keys=True) + "\n"
                                for n, t in templates.items()})
    return before, _with_params(after, case.name, case.params)


def _resource(templates, file_name, lid) -> dict:
    return templates[file_name]["Resources"][lid]


def _replace_refs(node, lid: str, literal: str):
    """Every Ref/GetAtt of lid becomes literal (so a removed resource leaves no dangling Ref)."""
    if isinstance(node, dict):
        if node in ({"Ref": lid},) or (set(node) == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] == lid):
            return literal
        return {k: _replace_refs(v, lid, literal) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_refs(v, lid, literal) for v in node]
    return node


def rename_service(t):
    _resource(t, "service.json", "Service")["Properties"]["ServiceName"] = {
        "Fn::Sub": "${ProjectName}-${EnvironmentName}-api"}


def move_subnet(t):
    _resource(t, "network.json", "PrivateSubnet1")["Properties"]["CidrBlock"]["Fn::Select"][0] = 3


def open_endpoints_to_world(t):
    _resource(t, "security.json", "EndpointIngressHttps")["Properties"]["CidrIp"] = "0.0.0.0/0"


def ollama_port_from_vpc(t):
    t["security.json"]["Resources"]["TaskIngressOllama"] = {
        "Type": "AWS::EC2::SecurityGroupIngress",
        "Properties": {"CidrIp": {"Ref": "VpcCidr"}, "Description": "debug", "FromPort": 11434,
                       "ToPort": 11434, "IpProtocol": "tcp",
                       "GroupId": {"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]}}}


def exec_action_wildcard(t):
    policies = _resource(t, "service.json", "TaskRole")["Properties"]["Policies"]["Fn::If"][1]
    policies[0]["PolicyDocument"]["Statement"][0]["Action"] = ["ssmmessages:*"]


def remove_gateway_log_group(t):
    service = t["service.json"]
    del service["Resources"]["GatewayLogGroup"]
    t["service.json"] = _replace_refs(service, "GatewayLogGroup", "/manual/gateway")


def new_root_parameter_without_default(t):
    t["root.json"]["Parameters"]["AlertWebhookUrl"] = {"Type": "String",
                                                       "Description": "where alerts go"}


def rename_root_parameter(t):
    root = t["root.json"]
    root["Parameters"]["WafRequestsPer5Min"] = root["Parameters"].pop("WafRateLimit")
    t["root.json"] = json.loads(json.dumps(root).replace('{"Ref": "WafRateLimit"}',
                                                         '{"Ref": "WafRequestsPer5Min"}'))


def lower_waf_rate_limit_default(t):
    t["root.json"]["Parameters"]["WafRateLimit"]["Default"] = 300


def cosmetic_descriptions(t):
    t["root.json"]["Description"] = t["root.json"].get("Description", "") + " (reworded)"
    t["root.json"]["Parameters"]["InstanceType"]["Description"] += " (reworded)"


def key_deletion_policy(t):
    _resource(t, "config.json", "KmsKey")["DeletionPolicy"] = "Delete"


def short_idle_timeout(t):
    for item in _resource(t, "load_balancer.json", "LoadBalancer")["Properties"]["LoadBalancerAttributes"]:
        if item.get("Key") == "idle_timeout.timeout_seconds":
            item["Value"] = "60"


def drop_root_output(t):
    del t["root.json"]["Outputs"]["LoadBalancerDnsName"]


def name_the_secret(t):
    _resource(t, "config.json", "ApiKeySecret")["Properties"]["Name"] = {
        "Fn::Sub": "${ProjectName}/${EnvironmentName}/api-keys"}


def endpoint_policy_only(t):
    endpoints = t["endpoints.json"]["Resources"]
    first = sorted(endpoints)[0]
    endpoints[first]["Properties"]["PrivateDnsEnabled"] = False


CASES = [
    Case("rename the ECS service", rename_service,
         expect=[(env, "service", "replace", "ECS::Service Service is replaced (ServiceName)")
                 for env in ENVS]),
    Case("move a subnet (CIDR)", move_subnet,
         expect=[(env, "network", "replace", "EC2::Subnet PrivateSubnet1 is replaced (CidrBlock)")
                 for env in ENVS]),
    Case("endpoint ingress widened to 0.0.0.0/0", open_endpoints_to_world,
         expect=[(env, "security", "network", "from 0.0.0.0/0 on EndpointSecurityGroupId: a wider "
                  "source than before") for env in ENVS]),
    Case("ingress to the Ollama port", ollama_port_from_vpc,
         expect=[(env, "security", "network", "reaches the Ollama port 11434") for env in ENVS]
         + [("dev", "security", "network", "a new port")]),
    Case("IAM action wildcard (ECS exec, on in dev only)", exec_action_wildcard,
         expect=[("dev", "service", "iam", "action wildcard ssmmessages:*")], quiet=("prod",),
         untouched={"prod": "service.json"}, only=True),
    Case("gateway log group removed", remove_gateway_log_group,
         expect=[(env, "service", "retained", "LogGroup GatewayLogGroup leaves the stack but stays "
                  "in the account (DeletionPolicy Retain)") for env in ENVS]),
    Case("new root parameter without a Default", new_root_parameter_without_default,
         expect=[(env, "root", "parameter", f"new parameter AlertWebhookUrl without a Default: "
                  f"params/{env}.json does NOT set it") for env in ENVS]
         + [(env, "root", "render", "AlertWebhookUrl") for env in ENVS]),
    Case("root parameter renamed", rename_root_parameter,
         expect=[(env, "root", "parameter", "parameter WafRateLimit removed (renamed to "
                  f"WafRequestsPer5Min?): params/{env}.json does not set it") for env in ENVS]),
    Case("root parameter renamed while a params file sets it", rename_root_parameter,
         before={"dev": {"WafRateLimit": "900"}},
         expect=[("dev", "root", "parameter", "parameter WafRateLimit removed (renamed to "
                  "WafRequestsPer5Min?): params/dev.json still sets it: every tool refuses that "
                  "file until the line goes"),
                 ("dev", "root", "render", "params/dev.json: WafRateLimit is not a parameter of "
                  "the root template")]),
    Case("a Default changed: it reaches the environments that do not set the parameter",
         lower_waf_rate_limit_default, before={"dev": {"WafRateLimit": "600"}},
         expect=[("dev", "root", "parameter", "WafRateLimit Default 600 -> Default 300: no effect "
                  "here, params/dev.json sets WafRateLimit")]
         + [(env, "root", "parameter", f"WafRateLimit Default 600 -> Default 300: params/{env}.json "
             f"does not set it: the next deploy of {env} sends the new Default")
            for env in ENVS if env != "dev"]),
    Case("params only: InstanceType in prod", params={"prod": {"InstanceType": "g5.2xlarge"}},
         expect=[("prod", "cluster", "rollout", "LaunchTemplate LaunchTemplate changes")],
         quiet=("dev",), only=True),
    Case("params only: LoadBalancerScheme internal in dev",
         params={"dev": {"LoadBalancerScheme": "internal"}},
         expect=[("dev", "load_balancer", "replace", "LoadBalancer LoadBalancer is replaced (Scheme)"
                  ": a new load balancer with a new DNS name")], quiet=("prod",)),
    Case("params only: an internal load balancer made internet-facing in prod",
         before={"prod": {"LoadBalancerScheme": "internal"}},
         params={"prod": {"LoadBalancerScheme": "internet-facing"}},
         expect=[("prod", "load_balancer", "network", "LoadBalancer LoadBalancer scheme internal -> "
                  "internet-facing: reachable from the internet"),
                 ("prod", "load_balancer", "replace", "LoadBalancer LoadBalancer is replaced (Scheme)")],
         quiet=("dev",)),
    Case("cosmetic: descriptions reworded", cosmetic_descriptions, expect=[], only=True),
    Case("KMS key DeletionPolicy Retain -> Delete", key_deletion_policy,
         expect=[(env, "config", "policy", "KMS::Key KmsKey DeletionPolicy Retain -> Delete")
                 for env in ENVS]),
    Case("ALB idle timeout shortened", short_idle_timeout,
         expect=[(env, "load_balancer", "timeout", "ALB idle timeout (LoadBalancer, "
                  f"alb_idle_timeout_seconds) {TIMEOUTS.alb_idle_timeout_seconds} -> 60")
                 for env in ENVS]),
    Case("root output removed", drop_root_output,
         expect=[(env, "root", "output", "output LoadBalancerDnsName removed") for env in ENVS]),
    Case("secret given a name", name_the_secret,
         expect=[(env, "config", "replace", "SecretsManager::Secret ApiKeySecret is replaced (Name)"
                  ": a new secret with a newly generated value") for env in ENVS]),
    Case("interface endpoints: prod only", endpoint_policy_only, expect=[], quiet=("dev",),
         untouched={"dev": "endpoints.json"}),
]
