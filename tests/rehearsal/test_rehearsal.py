"""The offline rehearsal: bootstrap + deploy against moto (server mode, 127.0.0.1), then assertions
on what was created, read back through the AWS APIs.

It proves the WIRING: every nested stack is created, every child parameter gets the value the
root template maps to it, every output resolves to a real value, the names line up across
layers (images, repositories, secrets, scaling labels, DNS). It does not prove AWS behaviour:
see tests/rehearsal/moto_adapter.py for what moto does not model.
"""

from __future__ import annotations

import ast
import json
import re
import urllib.parse

import pytest

from stacks import auth_gate, boot
from tests.rehearsal import moto_adapter
from tests.rehearsal.harness import (
    ACCOUNT,
    REGION,
    REPO,
    Rehearsal,
    copy_templates,
    load_template,
    templates_dir,
)
from tests.stacks import alb_sim

pytestmark = pytest.mark.slow

NESTED = "AWS::CloudFormation::Stack"
PLACEHOLDER_MARKERS = ("Fn::", "${", "{'", '{"', "None", "AWS::", "[")


@pytest.fixture(scope="module", params=["dev", "prod"])
def rehearsal(request, tmp_path_factory):
    """One emulator per environment: dev (one NAT, no interface endpoints, own certificate) and
    prod (NAT per AZ, the conditional Endpoints layer, WAF, termination protection)."""
    env = request.param
    run = Rehearsal(env, tmp_path_factory.mktemp(f"rehearsal-{env}")).start()
    try:
        run.run()
        yield run
    finally:
        run.close()


@pytest.fixture(scope="module")
def deployed(rehearsal):
    """Everything the assertions read, fetched once."""
    if not rehearsal.succeeded:
        errors = [line for line in rehearsal.transcript.splitlines() if ": error: " in line]
        pytest.fail("the rehearsal failed (test_bootstrap_and_deploy_succeed... shows its "
                    f"output): {errors[-1] if errors else 'see the transcript'}", pytrace=False)
    cfn = rehearsal.client("cloudformation")
    root_name = f"{rehearsal.params['ProjectName']}-{rehearsal.env}"
    root = cfn.describe_stacks(StackName=root_name)["Stacks"][0]
    resources = cfn.list_stack_resources(StackName=root_name)["StackResourceSummaries"]
    nested = {}
    for resource in resources:
        if resource["ResourceType"] == NESTED:
            nested[resource["LogicalResourceId"]] = cfn.describe_stacks(
                StackName=resource["PhysicalResourceId"])["Stacks"][0]
    return {"root": root, "nested": nested, "cfn": cfn,
            "root_template": load_template(rehearsal.templates, "root.json")}


def outputs(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", []) or []}


def parameters(stack: dict) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", []) or []}


def placeholder_problem(value) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"empty or not a string ({value!r})"
    for marker in PLACEHOLDER_MARKERS:
        if marker in value:
            return f"unresolved ({marker!r} in {value[:120]!r})"
    return None


class Conditions:
    """Evaluates a template's Conditions for known parameter values (Equals/Not/And/Or/Condition).

    An expression it cannot evaluate makes the condition unknown (None): callers skip those.
    """

    def __init__(self, template: dict, values: dict[str, str]):
        self.template = template
        self.values = values

    def value(self, expression):
        if isinstance(expression, dict) and "Ref" in expression:
            return self.values.get(expression["Ref"])
        return expression if isinstance(expression, str) else None

    def holds(self, name: str | None):
        if name is None:
            return True
        return self.evaluate(self.template.get("Conditions", {}).get(name))

    def evaluate(self, expression):
        if not isinstance(expression, dict) or len(expression) != 1:
            return None
        (function, arguments), = expression.items()
        if function == "Condition":
            return self.holds(arguments)
        if function == "Fn::Equals":
            left, right = (self.value(a) for a in arguments)
            return None if left is None or right is None else left == right
        results = [self.evaluate(a) for a in arguments]
        if None in results:
            return None
        if function == "Fn::Not":
            return not results[0]
        if function == "Fn::And":
            return all(results)
        if function == "Fn::Or":
            return any(results)
        return None


def expected_nested(deployed) -> dict[str, bool | None]:
    template = deployed["root_template"]
    conditions = Conditions(template, parameters(deployed["root"]))
    return {name: conditions.holds(body.get("Condition"))
            for name, body in template["Resources"].items() if body["Type"] == NESTED}


# ---------------------------------------------------------------------------------------------


def test_bootstrap_and_deploy_succeed_and_print_nested_events(rehearsal):
    assert rehearsal.succeeded, rehearsal.transcript[-6000:]
    deploy_output = rehearsal.steps[1].output
    assert "REHEARSAL: skipped" in deploy_output
    for name, present in expected_nested_from_template(rehearsal).items():
        if present:
            assert re.search(rf"^  \S+  {name}\s.*CREATE_COMPLETE", deploy_output, re.M), (
                f"no CREATE_COMPLETE event printed for nested stack {name}")


def expected_nested_from_template(rehearsal) -> dict[str, bool | None]:
    template = load_template(rehearsal.templates, "root.json")
    values = {k: v for k, v in rehearsal.params.items()}
    conditions = Conditions(template, values)
    return {name: conditions.holds(body.get("Condition"))
            for name, body in template["Resources"].items() if body["Type"] == NESTED}


def test_every_layer_is_a_complete_nested_stack(deployed):
    assert deployed["root"]["StackStatus"] == "CREATE_COMPLETE"
    for name, present in expected_nested(deployed).items():
        if present is None:
            continue
        if present:
            assert name in deployed["nested"], f"nested stack {name} was not created"
            assert deployed["nested"][name]["StackStatus"] == "CREATE_COMPLETE", name
        else:
            assert name not in deployed["nested"], f"{name} exists although its condition is false"


def test_every_root_output_resolves_to_a_real_value(deployed):
    template = deployed["root_template"]
    conditions = Conditions(template, parameters(deployed["root"]))
    actual = outputs(deployed["root"])
    problems = []
    for name, body in template.get("Outputs", {}).items():
        if conditions.holds(body.get("Condition")) is False:
            continue
        if name not in actual:
            problems.append(f"{name}: missing")
        elif problem := placeholder_problem(actual[name]):
            problems.append(f"{name}: {problem}")
    assert not problems, "root outputs:\n" + "\n".join(problems)
    assert actual, "the root stack has no outputs at all"


def test_every_nested_output_resolves_to_a_real_value(deployed, rehearsal):
    problems = []
    for name, stack in deployed["nested"].items():
        file_name = deployed["root_template"]["Resources"][name]["Properties"]["TemplateURL"]
        template = load_template(rehearsal.templates, file_name.rsplit("/", 1)[-1])
        conditions = Conditions(template, parameters(stack))
        actual = outputs(stack)
        for output, body in template.get("Outputs", {}).items():
            if conditions.holds(body.get("Condition")) is not True:
                continue
            if output not in actual:
                problems.append(f"{name}.{output}: missing")
            elif problem := placeholder_problem(actual[output]):
                problems.append(f"{name}.{output}: {problem}")
    assert not problems, "nested outputs:\n" + "\n".join(problems)


def mapped_value(expression, root_values: dict[str, str], nested_outputs: dict[str, dict]):
    """What the root template maps into a child parameter, from the deployed values."""
    if "Ref" in expression:
        return root_values.get(expression["Ref"])
    if "Fn::GetAtt" in expression:
        source, attribute = expression["Fn::GetAtt"]
        return nested_outputs.get(source, {}).get(attribute.removeprefix("Outputs."))
    if "Fn::Join" in expression:
        delimiter, items = expression["Fn::Join"]
        if isinstance(items, dict) and "Ref" in items:
            return root_values.get(items["Ref"])  # a List parameter: already comma-joined
    return None  # Sub and other expressions: checked by the output and resource assertions


def test_every_child_parameter_has_the_value_root_maps_to_it(deployed):
    root_values = parameters(deployed["root"])
    nested_outputs = {name: outputs(stack) for name, stack in deployed["nested"].items()}
    problems, checked = [], 0
    for name, stack in deployed["nested"].items():
        actual = parameters(stack)
        mapping = deployed["root_template"]["Resources"][name]["Properties"].get("Parameters", {})
        for parameter, expression in mapping.items():
            expected = mapped_value(expression, root_values, nested_outputs)
            if expected is None:
                continue
            checked += 1
            if str(actual.get(parameter)) != str(expected):
                problems.append(f"{name}.{parameter} = {actual.get(parameter)!r}, root maps "
                                f"{json.dumps(expression)} = {expected!r}")
    assert not problems, "\n".join(problems)
    assert checked > 10


def test_service_url_points_at_the_load_balancer(deployed, rehearsal):
    values = outputs(deployed["root"])
    url, dns = values["ServiceUrl"], values["LoadBalancerDnsName"]
    balancers = rehearsal.client("elbv2").describe_load_balancers()["LoadBalancers"]
    assert [b["DNSName"] for b in balancers] == [dns]
    domain = parameters(deployed["root"]).get("DomainName", "")
    if not domain:
        assert url.startswith("https://") and dns and dns in url
        return
    assert url == f"https://{domain}"
    if parameters(deployed["root"]).get("CreateDnsRecord") == "true":
        zone = rehearsal.overrides["HostedZoneId"]
        records = rehearsal.client("route53").list_resource_record_sets(
            HostedZoneId=zone)["ResourceRecordSets"]
        alias = [r for r in records if r["Name"].rstrip(".") == domain and r["Type"] == "A"]
        assert alias, f"no A record for {domain} in the zone"
        assert dns.lower() in alias[0]["AliasTarget"]["DNSName"].lower()


def test_scaling_policy_resource_label_names_this_alb_and_target_group(deployed, rehearsal):
    policies = rehearsal.client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace="ecs")["ScalingPolicies"]
    labelled = [p for p in policies if p.get("TargetTrackingScalingPolicyConfiguration", {})
                .get("PredefinedMetricSpecification", {}).get("ResourceLabel")]
    assert labelled, "no ALBRequestCountPerTarget scaling policy"
    elbv2 = rehearsal.client("elbv2")
    balancer = elbv2.describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"]
    groups = [g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]]
    expected = {balancer.split(":loadbalancer/", 1)[1] + "/" + g.split(":", 5)[5] for g in groups}
    for policy in labelled:
        label = policy["TargetTrackingScalingPolicyConfiguration"][
            "PredefinedMetricSpecification"]["ResourceLabel"]
        assert re.fullmatch(r"app/[\w-]+/[0-9a-f]+/targetgroup/[\w-]+/[0-9a-f]+", label), label
        assert label in expected, f"{label} names no ALB/target group pair of this stack"
    root = outputs(deployed["root"])
    assert {p["ResourceId"] for p in policies} == {
        f"service/{root['ClusterName']}/{root['ServiceName']}"}
    service_outputs = outputs(deployed["nested"]["Service"])
    if "RequestCountResourceLabel" in service_outputs:
        assert service_outputs["RequestCountResourceLabel"] in {
            p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
                "ResourceLabel"] for p in labelled}


def test_scale_to_zero_policies_are_wired_where_it_is_on(deployed, rehearsal):
    # Wiring only: moto keeps the step policies (adapter) but creates no CloudWatch alarm, so
    # nothing here shows an alarm invoking them (tests/stacks/test_scaling.py holds the alarms).
    policies = rehearsal.client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace="ecs")["ScalingPolicies"]
    steps = {p["PolicyName"].rsplit("-", 1)[1]: p["StepScalingPolicyConfiguration"]
             for p in policies if p["PolicyType"] == "StepScaling"}
    if rehearsal.params["ScaleToZero"] != "true":
        assert steps == {}
        return
    assert {name: (c["AdjustmentType"], c["StepAdjustments"][0]["ScalingAdjustment"])
            for name, c in steps.items()} == {"IdleScaling": ("ExactCapacity", 0),
                                              "WakeScaling": ("ExactCapacity", 1)}
    target, = rehearsal.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="ecs")["ScalableTargets"]
    assert target["MinCapacity"] == 0


def test_the_https_listener_answers_401_without_a_key_and_forwards_with_one(deployed, rehearsal):
    """The rules moto stored for the deployed listener (DescribeRules), evaluated offline by
    tests/stacks/alb_sim.py as `curl` would meet them: moto itself routes no request."""
    elbv2 = rehearsal.client("elbv2")
    balancer = elbv2.describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"]
    https = next(listener for listener in elbv2.describe_listeners(
        LoadBalancerArn=balancer)["Listeners"] if listener["Port"] == 443)
    rules = alb_sim.rules_from_api(elbv2.describe_rules(ListenerArn=https["ListenerArn"])["Rules"])
    (group,) = [g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]]
    curl = lambda path, **headers: alb_sim.evaluate(rules, alb_sim.Request(path, headers))  # noqa: E731
    for path in ("/v1/models", "/api/tags", "/healthz", "/readyz"):
        action = curl(path)
        assert action["Type"] == "fixed-response", (path, action)
        config = action["FixedResponseConfig"]
        assert config["StatusCode"] == auth_gate.STATUS
        style = "openai" if path.startswith("/v1/") else "ollama"
        assert json.loads(config["MessageBody"]) == json.loads(auth_gate.body(style))
    for path in ("/v1/models", "/api/chat", "/readyz"):
        action = curl(path, Authorization="Bearer rehearsal-key")
        assert action["Type"] == "forward", (path, action)
        targets = action.get("TargetGroupArn") or action["ForwardConfig"]["TargetGroups"][0][
            "TargetGroupArn"]
        assert targets == group
    http = next(listener for listener in elbv2.describe_listeners(
        LoadBalancerArn=balancer)["Listeners"] if listener["Port"] == 80)
    http_rules = elbv2.describe_rules(ListenerArn=http["ListenerArn"])["Rules"]
    assert [r["Actions"][0]["Type"] for r in http_rules] == ["redirect"]  # only the default


def test_the_instance_role_carries_the_agents_own_policy(deployed, rehearsal):
    iam = rehearsal.client("iam")
    (profile,) = iam.list_instance_profiles()["InstanceProfiles"]
    (role,) = profile["Roles"]
    # moto drops a role's ManagedPolicyArns (moto_adapter.py, "does NOT model"): that the only
    # managed policy left is Session Manager's is held by tests/security/test_instance_role.py.
    inline = set(iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"])
    expected = {"ecs-agent"} | ({"warm-up"} if rehearsal.params["WarmPoolEnabled"] == "true"
                                else set())
    assert inline == expected
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="ecs-agent")[
        "PolicyDocument"]
    if isinstance(document, str):  # moto keeps a CloudFormation role's inline policy as the
        # Python repr of the document, not JSON (AWS: URL-encoded JSON, which boto3 decodes)
        document = ast.literal_eval(urllib.parse.unquote(document))
    cluster = outputs(deployed["root"])["ClusterName"]
    resources = {r for s in document["Statement"] for r in s["Resource"]}
    assert all(r == "*" or f"/{cluster}" in r for r in resources), resources


def test_the_gpu_groups_wake_policy_hook_and_warm_pool(deployed, rehearsal):
    autoscaling = rehearsal.client("autoscaling")
    (group,) = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    name = group["AutoScalingGroupName"]
    policies = autoscaling.describe_policies(AutoScalingGroupName=name)["ScalingPolicies"]
    if rehearsal.params["ScaleToZero"] == "true":
        (policy,) = policies
        assert (policy["PolicyType"], policy["AdjustmentType"]) == ("StepScaling", "ExactCapacity")
        # moto applies it: the wake alarm's second action sets the group to one instance.
        autoscaling.execute_policy(AutoScalingGroupName=name, PolicyName=policy["PolicyName"])
        (group,) = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"]
        assert group["DesiredCapacity"] == max(1, int(rehearsal.params["AsgMinSize"]))
    else:
        assert policies == []
    hooks = autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
    if rehearsal.params["WarmPoolEnabled"] == "true":
        (hook,) = hooks
        assert (hook["LifecycleHookName"], hook["LifecycleTransition"]) == (
            boot.WARM_UP_HOOK, "autoscaling:EC2_INSTANCE_LAUNCHING")
        pool = autoscaling.describe_warm_pool(AutoScalingGroupName=name)["WarmPoolConfiguration"]
        assert (pool["MinSize"], pool["PoolState"]) == (
            int(rehearsal.params["WarmPoolMinSize"]), "Stopped")
        # what the warm-up pulls (stacks/boot.py reads it): the images the service runs
        ecs = rehearsal.client("ecs")
        (family,) = ecs.list_task_definitions()["taskDefinitionArns"]
        images = [c["image"] for c in ecs.describe_task_definition(taskDefinition=family)[
            "taskDefinition"]["containerDefinitions"]]
        parameter = rehearsal.client("ssm").get_parameter(
            Name=f"/{rehearsal.params['ProjectName']}/{rehearsal.env}/warm-up/images")
        assert sorted(parameter["Parameter"]["Value"].split(" ")) == sorted(images)
    else:
        assert hooks == []


def test_spot_instances_deploy(tmp_path):
    # Wiring only: moto creates the group with its mixed-instances policy; no Spot is launched.
    with Rehearsal("dev", tmp_path, overrides={"SpotInstances": "true"}) as run:
        run.run()
        assert run.succeeded, run.transcript[-2000:]
        group, = run.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    # deploy's preflight read the Spot quota the harness set (SPOT_QUOTA, 64 vCPUs) and sized
    # it at the larger override: (AsgMaxSize 2 + 1 roll surge) x 8 vCPUs (g5.2xlarge).
    spot_line = next(line for line in run.transcript.splitlines()
                     if "GPU Spot vCPU quota" in line and line.startswith("["))
    assert spot_line.startswith("[ok]"), run.transcript[-3000:]
    assert "24 vCPUs = (AsgMaxSize 2 + 1 for a `make roll` surge) x 8 vCPUs (g5.2xlarge" in (
        run.transcript)
    policy = group["MixedInstancesPolicy"]
    assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 0
    assert policy["InstancesDistribution"]["SpotAllocationStrategy"] == "capacity-optimized"
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == [
        "g5.xlarge", "g5.2xlarge"]


def test_task_definition_uses_this_registry_the_tag_and_existing_secrets(deployed, rehearsal):
    ecs = rehearsal.client("ecs")
    families = ecs.list_task_definitions()["taskDefinitionArns"]
    assert len(families) == 1, families
    definition = ecs.describe_task_definition(taskDefinition=families[0])["taskDefinition"]
    prefix = parameters(deployed["root"]).get("RepositoryPrefix") or rehearsal.params.get(
        "RepositoryPrefix", f"{rehearsal.params['ProjectName']}-{rehearsal.env}")
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    images = sorted(c["image"] for c in definition["containerDefinitions"])
    assert images == sorted(f"{registry}/{prefix}/{name}:rehearsal-placeholder"
                            for name in ("gateway", "ollama"))
    repositories = {r["repositoryName"] for r in
                    rehearsal.client("ecr").describe_repositories()["repositories"]}
    assert {image.split("/", 1)[1].split(":")[0] for image in images} <= repositories
    secrets = rehearsal.client("secretsmanager")
    ssm = rehearsal.client("ssm")
    referenced = [s["valueFrom"] for c in definition["containerDefinitions"]
                  for s in c.get("secrets", [])]
    assert referenced, "no container takes a secret"
    for value_from in referenced:
        if ":secretsmanager:" in value_from:
            secrets.describe_secret(SecretId=value_from.split(":::")[0] if ":::" in value_from
                                    else value_from)
        else:
            ssm.get_parameter(Name=value_from.split(":parameter", 1)[1])
    models = ssm.get_parameter(
        Name=f"/{rehearsal.params['ProjectName']}/{rehearsal.env}/GATEWAY_MODELS")
    assert models["Parameter"]["Value"] == rehearsal.params["ModelName"]


def test_api_key_secret_exists_and_never_reaches_the_output(deployed, rehearsal):
    arn = outputs(deployed["root"])["ApiKeySecretArn"]
    value = rehearsal.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    assert re.fullmatch(r"[A-Za-z0-9]{48}", value)
    assert value not in rehearsal.transcript


def test_cluster_uses_the_capacity_provider_of_its_auto_scaling_group(deployed, rehearsal):
    ecs = rehearsal.client("ecs")
    clusters = ecs.list_clusters()["clusterArns"]
    assert len(clusters) == 1, clusters
    cluster = ecs.describe_clusters(clusters=clusters)["clusters"][0]
    assert cluster["capacityProviders"], "the cluster has no capacity provider"
    providers = ecs.describe_capacity_providers(capacityProviders=cluster["capacityProviders"])
    groups = rehearsal.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    # CloudFormation accepts the group's ARN or its name here.
    known = {g["AutoScalingGroupARN"] for g in groups} | {g["AutoScalingGroupName"] for g in groups}
    for provider in providers["capacityProviders"]:
        assert provider["autoScalingGroupProvider"]["autoScalingGroupArn"] in known
    strategy = cluster.get("defaultCapacityProviderStrategy", [])
    assert {s["capacityProvider"] for s in strategy} <= set(cluster["capacityProviders"])


def test_registry_repositories_have_the_prefix_and_immutable_tags(rehearsal):
    # (moto stores ScanOnPush in CloudFormation case and never shows it: the template tests
    # check it.)
    prefix = (rehearsal.params.get("RepositoryPrefix")
              or f"{rehearsal.params['ProjectName']}-{rehearsal.env}")
    ecr = rehearsal.client("ecr")
    repos = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}
    for image in ("gateway", "ollama"):
        repo = repos[f"{prefix}/{image}"]
        assert repo["imageTagMutability"] == "IMMUTABLE"


def test_artifact_bucket_is_private_encrypted_tls_only_and_tagged(rehearsal):
    env = rehearsal.env
    bucket = f"{rehearsal.params['ProjectName']}-{env}-artifacts-{ACCOUNT}-{REGION}"
    s3 = rehearsal.client("s3")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Effect"] == "Deny"
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"Project": rehearsal.params["ProjectName"], "Environment": env}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(k.startswith(f"{env}/") for k in keys)


def test_stacks_carry_cost_allocation_tags_and_only_prod_is_protected(deployed, rehearsal):
    cfn = deployed["cfn"]
    project, env = rehearsal.params["ProjectName"], rehearsal.env
    for name in (f"{project}-{env}", f"{project}-{env}-registry"):
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        tags = {t["Key"]: t["Value"] for t in stack.get("Tags", [])}
        assert tags == {"Project": project, "Environment": env}, name
        assert bool(stack.get("EnableTerminationProtection")) == (env == "prod"), name


def test_every_resource_type_is_modelled_or_listed_as_unmodelled():
    """A resource type moto skips silently must be named in the adapter's UNMODELLED list, so
    nobody mistakes a skipped resource for a rehearsed one."""
    modelled = moto_adapter.stock_model_types() | set(moto_adapter.ADAPTED_TYPES)
    skipped = {}
    for path in sorted(templates_dir().glob("*.json")):
        for logical, body in json.loads(path.read_text()).get("Resources", {}).items():
            if body["Type"] not in modelled:
                skipped.setdefault(body["Type"], []).append(f"{path.stem}/{logical}")
    unlisted = sorted(set(skipped) - set(moto_adapter.UNMODELLED))
    assert not unlisted, f"moto skips these types and the adapter does not list them: {unlisted}"
    print("\nnot created by the rehearsal (moto does not model them):")
    for resource_type, where in sorted(skipped.items()):
        print(f"  {resource_type}: {', '.join(where)}")


def test_a_second_deploy_changes_nothing(deployed, rehearsal):
    before = deployed["cfn"].describe_stacks(StackName=deployed["root"]["StackName"])["Stacks"][0]
    again = rehearsal.step(*rehearsal.deploy_args())
    assert again.returncode == 0, again.output
    assert "No changes to deploy" in again.output
    after = deployed["cfn"].describe_stacks(StackName=deployed["root"]["StackName"])["Stacks"][0]
    assert after["StackStatus"] == before["StackStatus"]


def test_the_plain_aws_cli_path_deploys_the_same_stack(deployed, rehearsal, tmp_path):
    """The README's manual path (`aws cloudformation package` + `aws cloudformation deploy`
    with the params file) against the stack the tool deployed finds nothing to change: both
    paths deploy the same template and the same values."""
    result = rehearsal.cli_deploy(tmp_path)
    assert result.returncode == 0, result.output
    assert "No changes to deploy" in result.output


def test_teardown_turns_alb_deletion_protection_off_then_deletes(deployed, rehearsal):
    """Last test of each environment: it deletes the stack. The adapter refuses to delete a
    load balancer with deletion protection on, as ELB does, so this proves the order."""
    from botocore.exceptions import ClientError

    elbv2, cfn = rehearsal.client("elbv2"), deployed["cfn"]
    root = deployed["root"]["StackName"]
    balancer = elbv2.describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"]
    attributes = {a["Key"]: a["Value"] for a in elbv2.describe_load_balancer_attributes(
        LoadBalancerArn=balancer)["Attributes"]}
    protected = attributes.get("deletion_protection.enabled") == "true"
    assert protected == (rehearsal.params["DeletionProtection"] == "true")
    if protected:
        with pytest.raises(ClientError) as refused:
            elbv2.delete_load_balancer(LoadBalancerArn=balancer)
        assert refused.value.response["Error"]["Code"] == "OperationNotPermitted"
    if deployed["root"].get("EnableTerminationProtection"):
        # docs/operations.md, "Tear down": removing it is a deliberate act of the operator.
        cfn.update_termination_protection(EnableTerminationProtection=False, StackName=root)
    result = rehearsal.step("teardown", rehearsal.env, "--yes")
    assert result.returncode == 0, result.output
    if protected:
        assert "deletion protection was ON; turned it OFF" in result.output
        assert result.output.index("turned it OFF") < result.output.index("deleting stack")
    assert f"stack {root} deleted" in result.output
    assert not elbv2.describe_load_balancers()["LoadBalancers"]
    assert not [s for s in cfn.list_stacks()["StackSummaries"]
                if s["StackName"] == root and s["StackStatus"] != "DELETE_COMPLETE"]


# ---------------------------------------------------------------------------------------------
# A broken wiring must fail the rehearsal, naming what is missing
# ---------------------------------------------------------------------------------------------


def required_wired_parameter(templates) -> tuple[str, str]:
    """(nested stack, parameter) fed by another layer's output, with no default to fall back on."""
    root = load_template(templates, "root.json")
    for name, body in root["Resources"].items():
        if body["Type"] != NESTED or body.get("Condition"):
            continue
        child = load_template(templates, body["Properties"]["TemplateURL"].rsplit("/", 1)[-1])
        for parameter, expression in sorted(body["Properties"]["Parameters"].items()):
            if "Fn::GetAtt" in expression and "Default" not in child["Parameters"][parameter]:
                return name, parameter
    raise AssertionError("no wired parameter without a default found")


def test_a_missing_parameter_mapping_fails_the_rehearsal_naming_it(tmp_path):
    source = Rehearsal("dev", tmp_path).templates
    templates = copy_templates(source, tmp_path / "templates")
    stack, parameter = required_wired_parameter(templates)
    root = load_template(templates, "root.json")
    del root["Resources"][stack]["Properties"]["Parameters"][parameter]
    (templates / "root.json").write_text(json.dumps(root, indent=2))
    with Rehearsal("dev", tmp_path / "run", templates=templates) as broken:
        broken.run()
    deploy = broken.steps[-1]
    assert deploy.args[0] == "deploy"
    assert deploy.returncode == 1, deploy.output
    assert f"Embedded stack {stack} failed: Missing parameter {parameter}" in deploy.output
    assert "what to do:" in deploy.output


def test_the_rehearsal_refuses_real_aws(monkeypatch):
    from tools.deploy import apply, target

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    tgt = target.Target(env="dev", params={}, region=REGION, account=ACCOUNT,
                           templates_dir=REPO / "templates")
    with pytest.raises(target.DeployError, match="only to a local emulator"):
        apply.deploy(target.Aws(clients={"region": REGION}), tgt, None, {}, rehearsal=True,
                      wait_timeout=None)
