"""What the roles may do, evaluated offline with moto's IAMPolicy on the rendered templates.

The execution role (templates/service.json, ExecutionRole) is checked against what ECS does
at task start, derived from the task definition itself (its images, log configurations and
secrets) and the config layer's KMS key, not from the policy: every call must be allowed.
Then against what it must never do: other repositories, secrets, parameters, log groups and
keys, any write to SSM or Secrets Manager, IAM, "*": all denied. The helper is also proven on
the network layer's FlowLogRole.
"""

from __future__ import annotations

import copy

import pytest

from tests.security import iam_eval
from tests.security.common import ENVIRONMENTS
from tools import render

ACCOUNT = render.ACCOUNT_ID


def arn(service: str, region: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


# --- the helper itself --------------------------------------------------------------------------


def test_helper_matches_arns_exactly_not_as_regular_expressions():
    policy = [{"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["logs:PutLogEvents"],
        "Resource": ["arn:aws:logs:us-east-1:123456789012:log-group:a.b:*"]}]}]
    assert iam_eval.allowed(policy, "logs:PutLogEvents",
                            "arn:aws:logs:us-east-1:123456789012:log-group:a.b:log-stream:x")
    # moto alone would let "." match any character: axb is another log group.
    assert not iam_eval.allowed(policy, "logs:PutLogEvents",
                                "arn:aws:logs:us-east-1:123456789012:log-group:axb:log-stream:x")


def test_helper_applies_explicit_deny_and_supplied_conditions():
    policy = [{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": ["arn:aws:kms:r:1:key/k"],
         "Condition": {"StringEquals": {"kms:ViaService": "secretsmanager.r.amazonaws.com"}}},
        {"Effect": "Deny", "Action": ["kms:Decrypt"], "Resource": ["arn:aws:kms:r:1:key/deny"]},
    ]}]
    via_secrets = {"kms:ViaService": "secretsmanager.r.amazonaws.com"}
    assert iam_eval.allowed(policy, "kms:Decrypt", "arn:aws:kms:r:1:key/k", via_secrets)
    assert not iam_eval.allowed(policy, "kms:Decrypt", "arn:aws:kms:r:1:key/k",
                                {"kms:ViaService": "s3.r.amazonaws.com"})
    assert iam_eval.decision(policy, "kms:Decrypt", "arn:aws:kms:r:1:key/deny") == "denied"
    assert iam_eval.decision(policy, "kms:Encrypt", "arn:aws:kms:r:1:key/k") == "implicit-deny"


def test_helper_refuses_statements_it_cannot_evaluate():
    policy = [{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "NotResource": ["arn:aws:s3:::x/*"]}]}]
    with pytest.raises(ValueError, match="NotResource"):
        iam_eval.allowed(policy, "s3:GetObject", "arn:aws:s3:::y/z")


# --- the flow log role (network layer) ------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_flow_log_role_writes_its_group_and_nothing_else(rendered, env):
    network = rendered(env).templates["network.json"]
    region = rendered(env).region
    policies = iam_eval.role_policies(network, "FlowLogRole")
    group = network["Resources"]["FlowLogGroup"]["Properties"]
    group_name = network["Resources"]["VpcFlowLog"]["Properties"]["LogGroupName"]
    assert group  # the group the flow log writes to is the one the role may write
    stream = arn("logs", region, f"log-group:{group_name}:log-stream:eni-0123456789abcdef0-all")
    for action in ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"):
        assert iam_eval.allowed(policies, action, stream), action
    other = arn("logs", region, "log-group:some-other-group:log-stream:x")
    for action in ("logs:PutLogEvents", "logs:CreateLogStream", "logs:DeleteLogGroup"):
        assert not iam_eval.allowed(policies, action, other), action
    assert not iam_eval.allowed(policies, "logs:DeleteLogGroup", stream)
    assert not iam_eval.allowed(policies, "logs:CreateLogGroup", arn("logs", region, "log-group:x"))
    assert not iam_eval.allowed(policies, "*", "*")


# --- the execution role (service layer) -----------------------------------------------------------


def _service(rendered, env):
    rendering = rendered(env)
    if "service.json" not in rendering.templates:
        pytest.skip("templates/service.json does not exist yet (service layer)")
    return rendering, rendering.templates["service.json"]


def _task_start_calls(rendering, service) -> list[tuple[str, str, dict | None]]:
    """(action, resource, context) of every call ECS makes with the execution role at task
    start, derived from the rendered task definition and the config layer's key."""
    region = rendering.region
    calls = [("ecr:GetAuthorizationToken", "*", None)]
    task = service["Resources"]["TaskDefinition"]["Properties"]
    for container in task["ContainerDefinitions"]:
        registry_path = container["Image"].split("/", 1)[1]
        repository = registry_path.rsplit(":", 1)[0].split("@", 1)[0]
        repository_arn = arn("ecr", region, f"repository/{repository}")
        for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                       "ecr:BatchGetImage"):
            calls.append((action, repository_arn, None))
        options = container["LogConfiguration"]["Options"]
        group, prefix = options["awslogs-group"], options.get("awslogs-stream-prefix", "ecs")
        stream = arn("logs", options.get("awslogs-region", region),
                     f"log-group:{group}:log-stream:{prefix}/{container['Name']}/0123456789abcdef")
        calls.append(("logs:CreateLogStream", stream, None))
        calls.append(("logs:PutLogEvents", stream, None))
        for secret in container.get("Secrets", []):
            value_from = secret["ValueFrom"]
            if value_from.startswith("arn:aws:ssm:"):
                calls.append(("ssm:GetParameters", value_from, None))
            elif value_from.startswith("arn:aws:secretsmanager:"):
                base = ":".join(value_from.split(":")[:7])  # drop :json-key:version-stage:...
                calls.append(("secretsmanager:GetSecretValue", base, None))
                key = rendering.templates["config.json"]["Outputs"]["KmsKeyArn"]["Value"]
                calls.append(("kms:Decrypt", key,
                              {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}))
            else:
                raise AssertionError(f"{container['Name']}: {secret['Name']} ValueFrom is not an "
                                     f"ARN: {value_from}")
    return calls


def _refused(policies, calls):
    return [(action, resource) for action, resource, context in calls
            if not iam_eval.allowed(policies, action, resource, context)]


def _must_deny(rendering, calls):
    region = rendering.region
    own_parameters = [r for a, r, _ in calls if a == "ssm:GetParameters"]
    own_secret = next(r for a, r, _ in calls if a == "secretsmanager:GetSecretValue")
    own_repository = next(r for a, r, _ in calls if a == "ecr:BatchGetImage")
    key = rendering.templates["config.json"]["Outputs"]["KmsKeyArn"]["Value"]
    must_deny = [
        ("ecr:BatchGetImage", arn("ecr", region, "repository/someone-else/image")),
        ("ecr:GetDownloadUrlForLayer", arn("ecr", region, "repository/someone-else/image")),
        ("ecr:PutImage", own_repository),
        ("ecr:DeleteRepository", own_repository),
        ("secretsmanager:GetSecretValue", arn("secretsmanager", region, "secret:other-AbCdEf")),
        ("secretsmanager:PutSecretValue", own_secret),
        ("secretsmanager:UpdateSecret", own_secret),
        ("secretsmanager:DeleteSecret", own_secret),
        ("ssm:GetParameters", arn("ssm", region, "parameter/other/app/DB_PASSWORD")),
        ("ssm:GetParametersByPath", arn("ssm", region, "parameter/llm-api")),
        ("ssm:PutParameter", own_parameters[0]),
        ("ssm:DeleteParameter", own_parameters[0]),
        ("logs:PutLogEvents", arn("logs", region, "log-group:other:log-stream:x")),
        ("logs:DeleteLogGroup", arn("logs", region, "log-group:other")),
        ("kms:Decrypt", arn("kms", region, "key/00000000-0000-0000-0000-000000000000")),
        ("kms:Encrypt", key),
        ("kms:CreateGrant", key),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/anything"),
        ("iam:CreateRole", "*"),
        ("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/anything"),
        ("s3:GetObject", "arn:aws:s3:::any-bucket/any-key"),
        ("*", "*"),
    ]
    # Decrypting the key directly (not through Secrets Manager) is refused by the condition.
    return [(action, resource, None) for action, resource in must_deny] + [
        ("kms:Decrypt", key, {"kms:ViaService": f"s3.{region}.amazonaws.com"})]


def _granted(policies, calls):
    return [(action, resource) for action, resource, context in calls
            if iam_eval.allowed(policies, action, resource, context)]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_execution_role_can_start_the_task(rendered, env):
    rendering, service = _service(rendered, env)
    policies = iam_eval.role_policies(service, "ExecutionRole")
    calls = _task_start_calls(rendering, service)
    assert {action for action, _, _ in calls} >= {
        "ecr:GetAuthorizationToken", "ecr:BatchGetImage", "logs:PutLogEvents",
        "ssm:GetParameters", "secretsmanager:GetSecretValue", "kms:Decrypt"}
    refused = _refused(policies, calls)
    assert refused == [], f"{env}: the execution role cannot start the task: {refused}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_execution_role_can_do_nothing_else(rendered, env):
    rendering, service = _service(rendered, env)
    policies = iam_eval.role_policies(service, "ExecutionRole")
    granted = _granted(policies, _must_deny(rendering, _task_start_calls(rendering, service)))
    assert granted == [], f"{env}: the execution role may do more than start the task: {granted}"


def test_the_execution_role_checks_catch_a_missing_and_a_widened_permission(rendered):
    env = ENVIRONMENTS[-1]
    rendering, service = _service(rendered, env)
    calls = _task_start_calls(rendering, service)
    policies = copy.deepcopy(iam_eval.role_policies(service, "ExecutionRole"))
    statements = policies[0]["Statement"]
    # Without the log statement the task cannot start (and the test says which call fails).
    without_logs = [dict(policies[0], Statement=[s for s in statements
                                                  if "logs:PutLogEvents" not in s["Action"]])]
    assert {a for a, _ in _refused(without_logs, calls)} == {"logs:PutLogEvents",
                                                              "logs:CreateLogStream"}
    # Widening any statement to every resource is caught by the must-deny list.
    widened = copy.deepcopy(policies)
    for statement in widened[0]["Statement"]:
        statement["Resource"] = ["*"]
    granted = _granted(widened, _must_deny(rendering, calls))
    assert ("secretsmanager:GetSecretValue",
            arn("secretsmanager", rendering.region, "secret:other-AbCdEf")) in granted
