"""What the GPU instances' role may do, evaluated offline (tests/security/iam_eval.py) on the
rendered templates: the ECS agent's own calls for this cluster and its container instances, the
warm-up's read of this release's image URIs, its pull of this stack's two images
and its own launch hook, and nothing else. The one
managed policy left is Session Manager's (AmazonSSMManagedInstanceCore), not evaluated here."""

from __future__ import annotations

from functools import cache

import pytest

from tests.security import iam_eval
from tests.security.common import ENVIRONMENTS, rendering
from tools import params, render

ACCOUNT = render.ACCOUNT_ID
UUID = "0123456789abcdef0123456789abcdef"


@cache
def spot_rendering(env: str) -> render.Rendered:
    values = params.load_env(env) | {"SpotInstances": "true", "WarmPoolEnabled": "false"}
    return render.render_environment(env, values=values)


def instance_policies(rendered: render.Rendered) -> list[dict]:
    """The role's inline policies and every AWS::IAM::Policy attached to it."""
    cluster = rendered.templates["cluster.json"]
    (role,) = cluster["Resources"]["InstanceProfile"]["Properties"]["Roles"]  # its Ref, rendered
    attached = [body["Properties"]["PolicyDocument"] for body in cluster["Resources"].values()
                if body["Type"] == "AWS::IAM::Policy" and role in body["Properties"]["Roles"]]
    return iam_eval.role_policies(cluster, "InstanceRole") + attached


def facts(rendered: render.Rendered) -> dict:
    cluster = rendered.templates["cluster.json"]
    region = rendered.region
    name = cluster["Outputs"]["ClusterName"]["Value"]
    group = cluster["Outputs"]["AutoScalingGroupName"]["Value"]
    task = rendered.templates["service.json"]["Resources"]["TaskDefinition"]["Properties"]
    repositories = sorted(
        f"arn:aws:ecr:{region}:{ACCOUNT}:repository/"
        + c["Image"].split("/", 1)[1].rsplit(":", 1)[0] for c in task["ContainerDefinitions"])
    return {
        "cluster": cluster["Outputs"]["ClusterArn"]["Value"],
        "instance": f"arn:aws:ecs:{region}:{ACCOUNT}:container-instance/{name}/{UUID}",
        "other_cluster": f"arn:aws:ecs:{region}:{ACCOUNT}:cluster/someone-else",
        "other_instance": f"arn:aws:ecs:{region}:{ACCOUNT}:container-instance/someone-else/{UUID}",
        "group": f"arn:aws:autoscaling:{region}:{ACCOUNT}:autoScalingGroup:{UUID}:"
                 f"autoScalingGroupName/{group}",
        "other_group": f"arn:aws:autoscaling:{region}:{ACCOUNT}:autoScalingGroup:{UUID}:"
                       "autoScalingGroupName/someone-else",
        "repositories": repositories,
        "warm_pool": "WarmPool" in cluster["Resources"],
        # the rendered name when the warm pool is on; the same shape otherwise (denied then)
        "images_parameter": f"arn:aws:ssm:{region}:{ACCOUNT}:parameter" + cluster["Resources"]
        .get("WarmUpImagesParameter", {}).get("Properties", {})
        .get("Name", f"/{name.rsplit('-', 1)[0]}/warm-up/images"),
    }


def agent_calls(f: dict) -> list[tuple[str, str]]:
    """The calls the ECS agent makes with the instance role (stacks/policies.py sources)."""
    return [
        ("ecs:RegisterContainerInstance", f["cluster"]),
        ("ecs:SubmitTaskStateChange", f["cluster"]),
        ("ecs:SubmitContainerStateChange", f["cluster"]),
        ("ecs:SubmitAttachmentStateChanges", f["cluster"]),
        ("ecs:DiscoverPollEndpoint", "*"),
        ("ecs:Poll", f["instance"]),
        ("ecs:StartTelemetrySession", f["instance"]),
    ]


def warm_up_calls(f: dict) -> list[tuple[str, str]]:
    calls = [("ecr:GetAuthorizationToken", "*"),
             ("autoscaling:DescribeAutoScalingInstances", "*"),
             ("autoscaling:CompleteLifecycleAction", f["group"]),
             ("ssm:GetParameter", f["images_parameter"])]
    for repository in f["repositories"]:
        calls += [("ecr:BatchGetImage", repository), ("ecr:GetDownloadUrlForLayer", repository)]
    return calls


def must_deny(f: dict, spot: bool) -> list[tuple[str, str]]:
    denied = [
        ("ecs:RegisterContainerInstance", f["other_cluster"]),
        ("ecs:SubmitTaskStateChange", f["other_cluster"]),
        ("ecs:Poll", f["other_instance"]),
        ("ecs:UpdateContainerInstancesState", f["other_instance"]),
        ("ecs:CreateCluster", "*"),
        ("ecs:DeregisterContainerInstance", f["cluster"]),
        ("ecs:RunTask", "*"), ("ecs:UpdateService", "*"), ("ecs:TagResource", f["instance"]),
        ("ecr:BatchGetImage", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/someone-else/image"),
        ("ecr:PutImage", f["repositories"][0]),
        ("autoscaling:CompleteLifecycleAction", f["other_group"]),
        ("autoscaling:SetDesiredCapacity", f["group"]),
        # Not ssm:GetParameter on another parameter: AmazonSSMManagedInstanceCore (not
        # evaluated here) allows ssm:GetParameter on "*"; the warm-up's own statement keeps it
        # working without that policy.
        ("ssm:PutParameter", f["images_parameter"]),
        ("ec2:DescribeTags", "*"),
        ("logs:PutLogEvents", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:any:log-stream:x"),
        ("secretsmanager:GetSecretValue", "*"), ("iam:PassRole", "*"), ("*", "*"),
    ]
    if not spot:
        denied.append(("ecs:UpdateContainerInstancesState", f["instance"]))
    if not f["warm_pool"]:
        denied += warm_up_calls(f)
    return denied


def refused(policies, calls):
    return [(a, r) for a, r in calls if not iam_eval.allowed(policies, a, r)]


def granted(policies, calls):
    return [(a, r) for a, r in calls if iam_eval.allowed(policies, a, r)]


CASES = [(env, spot) for env in ENVIRONMENTS for spot in (False, True)]


@pytest.mark.parametrize("env, spot", CASES)
def test_the_agent_can_do_its_work_for_this_cluster(env, spot):
    rendered = spot_rendering(env) if spot else rendering(env)
    f = facts(rendered)
    calls = agent_calls(f) + (warm_up_calls(f) if f["warm_pool"] else [])
    calls += [("ecs:UpdateContainerInstancesState", f["instance"])] if spot else []
    assert refused(instance_policies(rendered), calls) == [], env


@pytest.mark.parametrize("env, spot", CASES)
def test_the_instance_role_can_do_nothing_else(env, spot):
    rendered = spot_rendering(env) if spot else rendering(env)
    f = facts(rendered)
    assert granted(instance_policies(rendered), must_deny(f, spot)) == [], env


def test_the_ecs_managed_policy_is_gone_and_session_manager_stays():
    role = rendering(ENVIRONMENTS[0]).templates["cluster.json"]["Resources"]["InstanceRole"]
    managed = role["Properties"]["ManagedPolicyArns"]
    assert managed == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]


def test_the_checks_catch_a_widened_statement():
    rendered = rendering(ENVIRONMENTS[0])
    policies = instance_policies(rendered)
    widened = [dict(p, Statement=[dict(s, Resource=["*"]) for s in p["Statement"]])
               for p in policies]
    assert ("ecs:RegisterContainerInstance", facts(rendered)["other_cluster"]) in granted(
        widened, must_deny(facts(rendered), spot=False))
