"""tools.deploy against stubbed AWS responses (botocore's Stubber): preview, teardown, the deploy
checks (service stability, rollback detection, image model label), images, and the CLI.

moto cannot test these: it lists no changes in nested change sets, runs no ECS tasks and leaks
resources on delete. The Stubber also fails a test on any call it was not told to expect, so
each test pins the exact AWS calls a step makes, in order.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tests.cfn import REPO
from tools import deploy
from tools import params as params_file

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROOT = "llm-api-dev"
NOW = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.UTC)


def client(name: str):
    return boto3.client(name, region_name=REGION, aws_access_key_id="x",
                        aws_secret_access_key="x")  # noqa: S106 (stub credentials)


@pytest.fixture
def stubs():
    """name -> (client, Stubber); every stubber must be used up by the end of the test."""
    made: dict[str, tuple] = {}

    def get(name: str):
        if name not in made:
            c = client(name)
            stubber = Stubber(c)
            stubber.activate()
            made[name] = (c, stubber)
        return made[name]

    yield get
    for _, stubber in made.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def aws_with(stubs, *names: str) -> deploy.Aws:
    return deploy.Aws(clients={"region": REGION, **{n: stubs(n)[0] for n in names}})


def target(env: str = "dev", templates: Path = REPO / "templates") -> deploy.Target:
    return deploy.Target(env=env, params=params_file.load_env(env), region=REGION,
                         account=ACCOUNT, templates_dir=templates)


def stack(name: str = ROOT, status: str = "UPDATE_COMPLETE", **extra) -> dict:
    return {"StackName": name, "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/"
            f"{name}/1", "CreationTime": NOW, "StackStatus": status, **extra}


def missing(stubber: Stubber, method: str, name: str = ROOT) -> None:
    stubber.add_client_error(method, service_error_code="ValidationError",
                             service_message=f"Stack with id {name} does not exist")


def resource(logical: str, resource_type: str, physical: str) -> dict:
    return {"LogicalResourceId": logical, "ResourceType": resource_type,
            "PhysicalResourceId": physical, "ResourceStatus": "CREATE_COMPLETE",
            "LastUpdatedTimestamp": NOW}


# ---------------------------------------------------------------------------------------------
# preview
# ---------------------------------------------------------------------------------------------

ROOT_CS = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/preview-x/1"
SERVICE_CS = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/nested-service/2"
BODY = '{"Resources": {}}'


def expect_change_set(cfn: Stubber, change_type: str, tag: str = "abc123def456") -> None:
    values = deploy.deploy_values(target(), tag, {})
    cfn.add_response("create_change_set", {"Id": ROOT_CS, "StackId": stack()["StackId"]}, {
        "StackName": ROOT, "ChangeSetName": ANY, "ChangeSetType": change_type,
        "Parameters": params_file.as_cloudformation(values),
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        "Tags": [{"Key": "Project", "Value": "llm-api"}, {"Key": "Environment", "Value": "dev"}],
        "IncludeNestedStacks": True, "Description": ANY, "TemplateBody": BODY,
    })


def test_preview_prints_the_changes_of_nested_stacks_and_keeps_the_change_set(stubs, capsys):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    expect_change_set(cfn, "UPDATE")
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"},
                     {"ChangeSetName": ROOT_CS})
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": [
        {"Type": "Resource", "ResourceChange": {
            "Action": "Modify", "LogicalResourceId": "Service", "ChangeSetId": SERVICE_CS,
            "ResourceType": "AWS::CloudFormation::Stack", "Replacement": "False"}},
        {"Type": "Resource", "ResourceChange": {
            "Action": "Add", "LogicalResourceId": "Endpoints",
            "ResourceType": "AWS::CloudFormation::Stack"}},
    ]}, {"ChangeSetName": ROOT_CS})
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": [
        {"Type": "Resource", "ResourceChange": {
            "Action": "Modify", "LogicalResourceId": "TaskDefinition",
            "ResourceType": "AWS::ECS::TaskDefinition", "Replacement": "True",
            "Details": [{"Target": {"Attribute": "Properties", "Name": "ContainerDefinitions",
                                    "RequiresRecreation": "Always"}}]}},
        {"Type": "Resource", "ResourceChange": {
            "Action": "Modify", "LogicalResourceId": "GatewayService",
            "ResourceType": "AWS::ECS::Service", "Replacement": "False",
            "Details": [{"Target": {"Attribute": "Properties", "Name": "TaskDefinition"}}]}},
    ]}, {"ChangeSetName": SERVICE_CS})

    rc = deploy.preview(aws_with(stubs, "cloudformation"), target(), "abc123def456", {}, BODY)

    out = capsys.readouterr().out
    assert rc == 0
    assert "3 resource change(s) in 2 stack(s): 1 add, 2 modify; 1 replacement(s)" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("STACK"))
    table = lines[header:header + 4]
    assert table[1].split()[:4] == ["root", "Add", "Endpoints", "CloudFormation::Stack"]
    assert table[2].split()[:5] == ["Service", "Modify", "TaskDefinition", "ECS::TaskDefinition",
                                    "YES"]
    assert table[2].endswith("ContainerDefinitions")
    assert table[3].split()[:3] == ["Service", "Modify", "GatewayService"]
    width = max(80, shutil.get_terminal_size((120, 40)).columns)
    assert all(len(line) <= width for line in table)
    assert "WARNING: Service/TaskDefinition (AWS::ECS::TaskDefinition) will be REPLACED" in out
    assert f"change set kept for review: {ROOT_CS}" in out
    assert "execute-change-set" in out and "delete-change-set" in out


def test_preview_of_a_new_stack_is_a_create_change_set(stubs, capsys):
    cfn = stubs("cloudformation")[1]
    missing(cfn, "describe_stacks")
    expect_change_set(cfn, "CREATE")
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"},
                     {"ChangeSetName": ROOT_CS})
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": []},
                     {"ChangeSetName": ROOT_CS})
    assert deploy.preview(aws_with(stubs, "cloudformation"), target(), "abc123def456", {},
                          BODY) == 0
    assert "CREATE change set" in capsys.readouterr().out


def test_preview_without_changes_deletes_the_empty_change_set(stubs, capsys):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    expect_change_set(cfn, "UPDATE")
    cfn.add_response("describe_change_set", {
        "Status": "FAILED", "StatusReason": "The submitted information didn't contain changes. "
        "Submit different information to create a change set."}, {"ChangeSetName": ROOT_CS})
    cfn.add_response("delete_change_set", {}, {"ChangeSetName": ROOT_CS})
    assert deploy.preview(aws_with(stubs, "cloudformation"), target(), "abc123def456", {},
                          BODY) == 0
    assert "no changes" in capsys.readouterr().out


def test_preview_refuses_a_stack_whose_first_create_failed(stubs):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(status="ROLLBACK_COMPLETE")]},
                     {"StackName": ROOT})
    with pytest.raises(deploy.DeployError, match="ROLLBACK_COMPLETE") as error:
        deploy.preview(aws_with(stubs, "cloudformation"), target(), "abc123def456", {}, BODY)
    assert "make teardown" in error.value.hint


def test_preview_without_an_image_tag_says_how_to_get_one(stubs, monkeypatch, tmp_path):
    monkeypatch.setattr(deploy, "RECORD_DIR", tmp_path)
    with pytest.raises(deploy.DeployError, match="no image tag") as error:
        deploy.preview(aws_with(stubs), target(), None, {}, BODY)
    assert "make images ENV=dev" in error.value.hint


# ---------------------------------------------------------------------------------------------
# deploy: parameters, images, stability, verification, smoke test
# ---------------------------------------------------------------------------------------------


def test_deploy_values_add_deploy_time_values_and_refuse_unknown_or_missing(tmp_path):
    values = deploy.deploy_values(target(), "abc123", {"HostedZoneId": "Z1"})
    assert values["ImageTag"] == "abc123" and values["HostedZoneId"] == "Z1"
    assert values["RepositoryPrefix"] == "llm-api-dev"
    with pytest.raises(deploy.DeployError, match="sets Nonsense, which root.json does not"):
        deploy.deploy_values(target(), "abc123", {"Nonsense": "1"})
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "root.json").write_text(json.dumps({"Parameters": {
        "ProjectName": {"Type": "String"}, "EnvironmentName": {"Type": "String"},
        "Needed": {"Type": "String"}}}))
    partial = target(templates=templates)
    partial.params = {"ProjectName": "llm-api", "EnvironmentName": "dev"}
    with pytest.raises(deploy.DeployError, match="root.json needs Needed"):
        deploy.deploy_values(partial, "abc123", {})
    # A root without ImageTag/RepositoryPrefix gets neither.
    assert deploy.deploy_values(partial, "abc123", {"Needed": "x"}) == {
        "ProjectName": "llm-api", "EnvironmentName": "dev", "Needed": "x"}


def image_blob(model: str | None) -> bytes:
    labels = {deploy.REVISION_LABEL: "abc123"} | ({deploy.MODEL_LABEL: model} if model else {})
    return json.dumps({"architecture": "amd64", "config": {"Labels": labels}}).encode()


def stub_image(ecr: Stubber, repository: str, blob: bytes | None, urls: dict) -> None:
    if blob is None:
        ecr.add_response("batch_get_image", {"images": [], "failures": [
            {"imageId": {"imageTag": "abc123"}, "failureCode": "ImageNotFound"}]}, {
            "repositoryName": repository, "imageIds": [{"imageTag": "abc123"}],
            "acceptedMediaTypes": deploy.MANIFEST_TYPES})
        return
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    manifest = {"schemaVersion": 2, "config": {"digest": digest},
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    ecr.add_response("batch_get_image", {"images": [{"imageManifest": json.dumps(manifest)}]}, {
        "repositoryName": repository, "imageIds": [{"imageTag": "abc123"}],
        "acceptedMediaTypes": deploy.MANIFEST_TYPES})
    url = f"https://ecr.example/{repository}/{digest}"
    urls[url] = blob
    ecr.add_response("get_download_url_for_layer", {"downloadUrl": url, "layerDigest": digest},
                     {"repositoryName": repository, "layerDigest": digest})


REGISTRY_OUTPUTS = [
    {"OutputKey": f"{image.capitalize()}Repository{kind}", "OutputValue": value}
    for image in ("gateway", "ollama")
    for kind, value in (("Name", f"llm-api-dev/{image}"),
                        ("Uri", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/llm-api-dev/{image}"))
]


@pytest.fixture
def downloads(monkeypatch):
    urls: dict[str, bytes] = {}

    def urlopen(url, timeout=None):
        return io.BytesIO(urls[url])

    monkeypatch.setattr(deploy.urllib.request, "urlopen", urlopen)
    return urls


@pytest.mark.parametrize(("model", "ok"), [("llama3.2:1b", True), ("qwen2.5:0.5b", False),
                                           (None, False)])
def test_deploy_refuses_an_ollama_image_built_for_another_model(stubs, downloads, model, ok):
    cfn, ecr = stubs("cloudformation")[1], stubs("ecr")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    stub_image(ecr, "llm-api-dev/gateway", image_blob(None), downloads)
    stub_image(ecr, "llm-api-dev/ollama", image_blob(model), downloads)
    aws = aws_with(stubs, "cloudformation", "ecr")
    if ok:
        deploy.check_images(aws, target(), "abc123")
        return
    with pytest.raises(deploy.DeployError, match="was built for model") as error:
        deploy.check_images(aws, target(), "abc123")
    assert "ModelName='llama3.2:1b'" in error.value.message


def test_deploy_refuses_a_missing_image(stubs, downloads):
    cfn, ecr = stubs("cloudformation")[1], stubs("ecr")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    stub_image(ecr, "llm-api-dev/gateway", None, downloads)
    with pytest.raises(deploy.DeployError, match="llm-api-dev/gateway:abc123 is not in ECR"):
        deploy.check_images(aws_with(stubs, "cloudformation", "ecr"), target(), "abc123")


def test_an_image_whose_config_does_not_match_its_digest_is_refused(stubs, downloads):
    ecr = stubs("ecr")[1]
    stub_image(ecr, "llm-api-dev/ollama", image_blob("llama3.2:1b"), downloads)
    for url in downloads:
        downloads[url] = image_blob("tampered")
    with pytest.raises(deploy.DeployError, match="does not match its digest"):
        deploy.image_model(stubs("ecr")[0], "llm-api-dev/ollama", "abc123")


SERVICE_REF = deploy.ServiceRef("llm-api-dev", "llm-api-dev-gateway",
                                f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gw:7")


def service_state(deployments: list[dict], running: int, desired: int = 1,
                  task_definition: str = SERVICE_REF.task_definition, events=()) -> dict:
    return {"services": [{
        "serviceName": SERVICE_REF.service, "taskDefinition": task_definition,
        "runningCount": running, "desiredCount": desired, "deployments": deployments,
        "events": [{"id": str(i), "createdAt": NOW, "message": m} for i, m in events]}]}


def deployment(state: str, status: str = "PRIMARY", running: int = 1, task: str | None = None,
               **extra) -> dict:
    return {"id": f"ecs-svc/{status}", "status": status, "rolloutState": state,
            "runningCount": running, "desiredCount": 1, "pendingCount": 0,
            "taskDefinition": task or SERVICE_REF.task_definition, **extra}


def expect_describe_services(ecs: Stubber, response: dict) -> None:
    ecs.add_response("describe_services", response, {"cluster": SERVICE_REF.cluster,
                                                     "services": [SERVICE_REF.service]})


def test_wait_for_service_waits_for_one_completed_deployment(stubs, capsys):
    ecs = stubs("ecs")[1]
    old = deployment("COMPLETED", "ACTIVE", task="arn:old:6")
    expect_describe_services(ecs, service_state([deployment("IN_PROGRESS", running=0), old], 1,
                                                events=[("1", "old event")]))
    expect_describe_services(ecs, service_state(
        [deployment("IN_PROGRESS", running=0), old], 1,
        events=[("2", "service has started 1 tasks"), ("1", "old event")]))
    expect_describe_services(ecs, service_state([deployment("COMPLETED")], 1))
    service = deploy.wait_for_service(aws_with(stubs, "ecs"), SERVICE_REF, timeout=600,
                                      sleep=lambda s: None)
    deploy.verify_task_definition(service, SERVICE_REF)
    out = capsys.readouterr().out
    assert "ecs: service has started 1 tasks" in out and "old event" not in out
    assert "service stable" in out and "running task definition is the new one" in out


def test_a_circuit_breaker_rollback_fails_the_deploy(stubs):
    ecs = stubs("ecs")[1]
    expect_describe_services(ecs, service_state([deployment(
        "FAILED", running=0, rolloutStateReason="ECS deployment circuit breaker: tasks failed "
        "to start.")], 1))
    with pytest.raises(deploy.DeployError, match="circuit breaker") as error:
        deploy.wait_for_service(aws_with(stubs, "ecs"), SERVICE_REF, 600, sleep=lambda s: None)
    assert "health checks" in error.value.hint


def test_a_rollback_that_looks_stable_is_caught_by_the_task_definition_check():
    rolled_back = service_state([deployment("COMPLETED", task="arn:old:6")], 1,
                                task_definition="arn:old:6")["services"][0]
    with pytest.raises(deploy.DeployError, match="not the task definition this deploy created"):
        deploy.verify_task_definition(rolled_back, SERVICE_REF)


def test_wait_for_service_gives_up_at_its_own_timeout(stubs):
    ecs = stubs("ecs")[1]
    for _ in range(3):
        expect_describe_services(ecs, service_state([deployment("IN_PROGRESS", running=0)], 0))
    ticks = iter([0, 0, 400, 700])
    with pytest.raises(deploy.DeployError, match="not stable after 10 min") as error:
        deploy.wait_for_service(aws_with(stubs, "ecs"), SERVICE_REF, 600, sleep=lambda s: None,
                                clock=lambda: next(ticks))
    assert "PROVISIONING" in error.value.hint


def test_the_stability_timeout_comes_from_the_model_load_budget():
    base = deploy.stability_timeout({"HealthCheckGracePeriodSeconds": "600"}, target())
    longer = deploy.stability_timeout({"HealthCheckGracePeriodSeconds": "1200"}, target())
    assert longer - base == 600
    assert base > 600  # longer than the CLI waiter's 10 minutes


def test_smoke_test_checks_models_and_a_completion():
    calls = []

    def request(method, url, key, body=None):
        calls.append((method, url, key, body))
        if url.endswith("/v1/models"):
            return 200, {"data": [{"id": "llama3.2:1b"}]}
        return 200, {"choices": [{"message": {"content": "OK"}}]}

    deploy.smoke_test("https://api.example/", "k1", "llama3.2:1b", request=request)
    assert [c[:3] for c in calls] == [("GET", "https://api.example/v1/models", "k1"),
                                      ("POST", "https://api.example/v1/chat/completions", "k1")]
    assert calls[1][3]["max_tokens"] <= 16


def test_smoke_test_fails_when_the_model_is_not_served():
    def request(method, url, key, body=None):
        return 200, {"data": [{"id": "other"}]}

    with pytest.raises(deploy.DeployError, match="expected 200 listing llama3.2:1b"):
        deploy.smoke_test("https://api.example", "k", "llama3.2:1b", request=request)


def test_the_newest_api_key_is_used_during_a_rotation(stubs):
    secrets = stubs("secretsmanager")[1]
    secrets.add_response("get_secret_value", {"SecretString": "old1,new2"}, {"SecretId": "arn"})
    assert deploy.api_key(aws_with(stubs, "secretsmanager"), "arn") == "new2"


@pytest.mark.parametrize(("text", "advice"), [
    ("Stack:x is in ROLLBACK_COMPLETE state and can not be updated", "make teardown"),
    ("Parameters: [VpcId] must have values", "params/<env>.json"),
    ("Embedded stack Security failed: Missing parameter VpcId", "stacks/root.py"),
    ("You have requested more vCPU capacity... VcpuLimitExceeded", "Service Quotas"),
    ("Resource of type 'AWS::Logs::LogGroup' with identifier 'x' already exists.", "retained"),
])
def test_common_aws_errors_come_with_what_to_do(text, advice):
    assert advice in deploy.hint_for(text)


# ---------------------------------------------------------------------------------------------
# teardown
# ---------------------------------------------------------------------------------------------


def test_teardown_refuses_a_protected_stack(stubs):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(EnableTerminationProtection=True)]},
                     {"StackName": ROOT})
    with pytest.raises(deploy.DeployError, match="termination protection") as error:
        deploy.teardown(aws_with(stubs, "cloudformation"), target(), assume_yes=True)
    assert "update-termination-protection --no-enable-termination-protection" in error.value.hint


def test_teardown_asks_for_the_stack_name(stubs):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    with pytest.raises(deploy.DeployError, match="not confirmed"):
        deploy.teardown(aws_with(stubs, "cloudformation"), target(), assume_yes=False,
                        ask=lambda prompt: "yes")


def test_teardown_scales_to_zero_then_unprotects_then_deletes_and_lists_what_it_kept(
        stubs, monkeypatch, capsys):
    order = []
    plan = deploy.TeardownPlan(services=[("c", "s")], groups=["asg"], kept=[
        deploy.Kept("log group (Service/GatewayLogGroup)", "lg", "aws logs delete-log-group "
                    "--log-group-name lg")])
    monkeypatch.setattr(deploy, "plan_teardown", lambda aws, t: order.append("plan") or plan)
    monkeypatch.setattr(deploy, "scale_services_to_zero",
                        lambda aws, services, timeout: order.append(("scale", services)))
    monkeypatch.setattr(deploy, "release_instances",
                        lambda aws, groups: order.append(("release", groups)))
    monkeypatch.setattr(deploy, "delete_root", lambda aws, t: order.append("delete"))
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    assert deploy.teardown(aws_with(stubs, "cloudformation"), target(), assume_yes=False,
                           ask=lambda prompt: ROOT) == 0
    assert order == ["plan", ("scale", [("c", "s")]), ("release", ["asg"]), "delete"]
    out = capsys.readouterr().out
    kept = out.split("kept (retained on purpose", 1)[1]
    for name in ("lg", "llm-api-dev/gateway", "llm-api-dev/ollama", f"{ROOT}-registry",
                 f"llm-api-dev-artifacts-{ACCOUNT}-{REGION}"):
        assert name in kept
    assert "aws ecr delete-repository --repository-name llm-api-dev/ollama --force" in kept


def test_teardown_plan_finds_services_groups_and_retained_resources(stubs):
    cfn = stubs("cloudformation")[1]
    service_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/llm-api-dev/llm-api-dev-gateway"
    tree = {
        ROOT: [resource("Cluster", "AWS::CloudFormation::Stack", "cluster-stack"),
               resource("Service", "AWS::CloudFormation::Stack", "service-stack")],
        "cluster-stack": [resource("AutoScalingGroup", "AWS::AutoScaling::AutoScalingGroup",
                                   "asg-1"),
                          resource("Cluster", "AWS::ECS::Cluster", "llm-api-dev")],
        "service-stack": [resource("GatewayService", "AWS::ECS::Service", service_arn),
                          resource("TaskDefinition", "AWS::ECS::TaskDefinition", "arn:td:7"),
                          resource("GatewayLogGroup", "AWS::Logs::LogGroup", "gw-logs")],
    }
    for name, resources in tree.items():
        cfn.add_response("list_stack_resources", {"StackResourceSummaries": resources},
                         {"StackName": name})
    templates = {
        ROOT: {"Resources": {}},
        "cluster-stack": {"Resources": {"AutoScalingGroup": {}, "Cluster": {}}},
        "service-stack": {"Resources": {"GatewayLogGroup": {"DeletionPolicy": "Retain"},
                                        "TaskDefinition": {"DeletionPolicy": "Delete"}}},
    }
    for name, body in templates.items():
        cfn.add_response("get_template", {"TemplateBody": json.dumps(body)},
                         {"StackName": name, "TemplateStage": "Processed"})
    plan = deploy.plan_teardown(aws_with(stubs, "cloudformation"), target())
    assert plan.services == [("llm-api-dev", "llm-api-dev-gateway")]
    assert plan.groups == ["asg-1"]
    assert [(k.name, k.how_to_delete) for k in plan.kept] == [
        ("gw-logs", "aws logs delete-log-group --log-group-name gw-logs")]


def test_scale_to_zero_pins_autoscaling_then_waits_for_the_tasks(stubs, capsys):
    scaling, ecs = stubs("application-autoscaling")[1], stubs("ecs")[1]
    resource_id = "service/c/s"
    scaling.add_response("describe_scalable_targets", {"ScalableTargets": [{
        "ServiceNamespace": "ecs", "ResourceId": resource_id,
        "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 1, "MaxCapacity": 4,
        "RoleARN": "arn:role", "CreationTime": NOW}]},
        {"ServiceNamespace": "ecs", "ResourceIds": [resource_id]})
    scaling.add_response("register_scalable_target", {}, {
        "ServiceNamespace": "ecs", "ResourceId": resource_id,
        "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 0, "MaxCapacity": 0})
    ecs.add_response("update_service", {}, {"cluster": "c", "service": "s", "desiredCount": 0})
    ecs.add_response("describe_services", {"services": [{"runningCount": 1, "pendingCount": 0}]},
                     {"cluster": "c", "services": ["s"]})
    ecs.add_response("describe_services", {"services": [{"runningCount": 0, "pendingCount": 0}]},
                     {"cluster": "c", "services": ["s"]})
    deploy.scale_services_to_zero(aws_with(stubs, "application-autoscaling", "ecs"),
                                  [("c", "s")], timeout=600, sleep=lambda s: None)
    out = capsys.readouterr().out
    assert "autoscaling range pinned to 0" in out and "no tasks left" in out


def test_release_instances_removes_scale_in_protection(stubs):
    autoscaling = stubs("autoscaling")[1]
    instances = [{"InstanceId": f"i-{n}", "ProtectedFromScaleIn": n < 2, "AvailabilityZone": "a",
                  "LifecycleState": "InService", "HealthStatus": "Healthy"} for n in range(3)]
    autoscaling.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [{
        "AutoScalingGroupName": "asg", "MinSize": 1, "MaxSize": 4, "DesiredCapacity": 3,
        "DefaultCooldown": 300, "AvailabilityZones": ["a"], "HealthCheckType": "EC2",
        "CreatedTime": NOW, "Instances": instances}]}, {"AutoScalingGroupNames": ["asg"]})
    autoscaling.add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": "asg", "NewInstancesProtectedFromScaleIn": False, "MinSize": 0,
        "DesiredCapacity": 0})
    autoscaling.add_response("set_instance_protection", {}, {
        "AutoScalingGroupName": "asg", "InstanceIds": ["i-0", "i-1"],
        "ProtectedFromScaleIn": False})
    deploy.release_instances(aws_with(stubs, "autoscaling"), ["asg"])


def event(n: int, status: str, reason: str = "", logical: str = ROOT) -> dict:
    return {"StackId": stack()["StackId"], "StackName": ROOT, "EventId": f"e{n}",
            "LogicalResourceId": logical, "ResourceType": "AWS::CloudFormation::Stack",
            "Timestamp": NOW, "ResourceStatus": status, "ResourceStatusReason": reason}


def expect_poll(cfn: Stubber, events: list[dict]) -> None:
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": []}, {"StackName": ROOT})
    cfn.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": ROOT})


def test_delete_root_prints_events_until_the_stack_is_gone(stubs, capsys):
    cfn = stubs("cloudformation")[1]
    expect_poll(cfn, [event(1, "UPDATE_COMPLETE")])  # prime: history, not printed
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    cfn.add_response("delete_stack", {}, {"StackName": stack()["StackId"]})
    expect_poll(cfn, [event(2, "DELETE_IN_PROGRESS", "User Initiated"),
                      event(1, "UPDATE_COMPLETE")])
    cfn.add_response("describe_stacks", {"Stacks": [stack(status="DELETE_IN_PROGRESS")]},
                     {"StackName": stack()["StackId"]})
    expect_poll(cfn, [event(2, "DELETE_IN_PROGRESS")])
    cfn.add_response("describe_stacks", {"Stacks": [stack(status="DELETE_COMPLETE")]},
                     {"StackName": stack()["StackId"]})
    deploy.delete_root(aws_with(stubs, "cloudformation"), target(), sleep=lambda s: None)
    out = capsys.readouterr().out
    assert "DELETE_IN_PROGRESS   User Initiated" in out and "UPDATE_COMPLETE" not in out
    assert f"stack {ROOT} deleted" in out


def test_a_failed_delete_names_the_resource_and_what_to_do(stubs):
    cfn = stubs("cloudformation")[1]
    expect_poll(cfn, [])
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    cfn.add_response("delete_stack", {}, {"StackName": stack()["StackId"]})
    expect_poll(cfn, [event(3, "DELETE_FAILED", "The following resource(s) failed to delete: "
                            "[Cluster]."),
                      event(2, "DELETE_FAILED", "Embedded stack arn:... was not successfully "
                            "deleted", logical="Cluster"),
                      event(1, "DELETE_FAILED", "Resource handler returned message: The "
                            "Capacity provider is in use", logical="CapacityProvider")])
    cfn.add_response("describe_stacks", {"Stacks": [stack(status="DELETE_FAILED")]},
                     {"StackName": stack()["StackId"]})
    with pytest.raises(deploy.DeployError, match="CapacityProvider") as error:
        deploy.delete_root(aws_with(stubs, "cloudformation"), target(), sleep=lambda s: None)
    assert "make teardown again" in error.value.hint


# ---------------------------------------------------------------------------------------------
# images (a fake docker on PATH records what would run)
# ---------------------------------------------------------------------------------------------


def fake_docker(tmp_path: Path, info_exit: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    script = bin_dir / "docker"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
if [ "$1" = info ]; then
  [ {info_exit} -eq 0 ] && echo 27.0.0 && exit 0
  echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1
fi
if [ "$1" = login ]; then cat > /dev/null; fi
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_images_refuses_clearly_without_a_docker_engine(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", f"{fake_docker(tmp_path, info_exit=1)}:{os.environ['PATH']}")
    # No AWS client is given: the step must stop before any AWS call.
    assert deploy.main(["images", "dev"], aws=deploy.Aws(clients={"region": REGION})) == 1
    err = capsys.readouterr().err
    assert "images needs a running Docker engine: `docker info` failed" in err
    assert "Cannot connect to the Docker daemon" in err and "what to do:" in err


def test_images_refuses_without_the_docker_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert deploy.main(["images", "dev"], aws=deploy.Aws(clients={"region": REGION})) == 1
    assert "the docker command is not installed" in capsys.readouterr().err


def test_images_builds_labels_tags_pushes_and_records(tmp_path, monkeypatch, stubs, downloads):
    monkeypatch.setenv("PATH", f"{fake_docker(tmp_path, info_exit=0)}:{os.environ['PATH']}")
    monkeypatch.setattr(deploy, "git_revision", lambda: "abc123")
    monkeypatch.setattr(deploy, "RECORD_DIR", tmp_path / "records")
    cfn, ecr = stubs("cloudformation")[1], stubs("ecr")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    stub_image(ecr, "llm-api-dev/gateway", None, downloads)
    ecr.add_response("get_authorization_token", {"authorizationData": [{
        "authorizationToken": "QVdTOnNlY3JldA==", "proxyEndpoint":
        f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"}]}, {})
    stub_image(ecr, "llm-api-dev/ollama", None, downloads)
    assert deploy.images(aws_with(stubs, "cloudformation", "ecr"), target()) == 0
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/llm-api-dev"
    log = (tmp_path / "docker.log").read_text().splitlines()
    assert log == [
        "info --format {{.ServerVersion}}",
        f"login --username AWS --password-stdin https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
        f"build --platform linux/amd64 --file app/Dockerfile --tag {registry}/gateway:abc123 "
        "--label org.opencontainers.image.revision=abc123 .",
        f"push {registry}/gateway:abc123",
        f"build --platform linux/amd64 --file ollama/Dockerfile --tag {registry}/ollama:abc123 "
        "--label org.opencontainers.image.revision=abc123 --build-arg MODEL=llama3.2:1b "
        "--label llm-api.model=llama3.2:1b ollama",
        f"push {registry}/ollama:abc123",
    ]
    record = json.loads((tmp_path / "records" / "dev.json").read_text())
    assert record["image_tag"] == "abc123" and record["model"] == "llama3.2:1b"
    assert list((tmp_path / "records").iterdir()) == [tmp_path / "records" / "dev.json"]
    assert deploy.resolve_image_tag(target(), None, rehearsal=False) == "abc123"


def test_images_refuses_to_reuse_a_tag_built_for_another_model(tmp_path, monkeypatch, stubs,
                                                               downloads):
    monkeypatch.setenv("PATH", f"{fake_docker(tmp_path, info_exit=0)}:{os.environ['PATH']}")
    monkeypatch.setattr(deploy, "git_revision", lambda: "abc123")
    cfn, ecr = stubs("cloudformation")[1], stubs("ecr")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    stub_image(ecr, "llm-api-dev/gateway", image_blob(None), downloads)
    stub_image(ecr, "llm-api-dev/ollama", image_blob("other:7b"), downloads)
    with pytest.raises(deploy.DeployError, match="tags are immutable"):
        deploy.images(aws_with(stubs, "cloudformation", "ecr"), target())


# ---------------------------------------------------------------------------------------------
# The CLI and the Makefile targets
# ---------------------------------------------------------------------------------------------

STEPS = ("bootstrap", "images", "preview", "deploy", "teardown")


@pytest.mark.parametrize("step", STEPS)
def test_every_step_has_help(step):
    result = subprocess.run([sys.executable, "-m", "tools.deploy", step, "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m tools.deploy {step} ")
    assert "ENV" in result.stdout and "--region" in result.stdout


def test_top_level_help_lists_every_step():
    result = subprocess.run([sys.executable, "-m", "tools.deploy", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for step in STEPS:
        assert step in result.stdout


@pytest.mark.parametrize("step", STEPS)
def test_make_targets_call_the_step(step):
    result = subprocess.run(["make", "-n", step, "ENV=dev"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"-m tools.deploy {step} dev" in result.stdout


def test_make_targets_need_an_env():
    result = subprocess.run(["make", "-n", "deploy"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "ENV=" in result.stderr


def test_make_deploy_passes_an_explicit_image_tag():
    result = subprocess.run(["make", "-n", "deploy", "ENV=dev", "IMAGE_TAG=abc123"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert "--image-tag abc123" in result.stdout
