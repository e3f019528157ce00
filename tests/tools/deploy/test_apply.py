"""deploy: the values it deploys, the change set it executes, the errors it explains."""

from __future__ import annotations

import json

import pytest
from botocore.stub import ANY

from tests.tools.deploy.stubs import ACCOUNT, NOW, REGION, ROOT, aws_with, stack, target
from tools.deploy import apply
from tools.deploy.target import Aws, DeployError, hint_for
from tools.preflight import runner as preflight_runner


def test_deploy_values_add_deploy_time_values_and_refuse_unknown_or_missing(tmp_path):
    values = apply.deploy_values(target(), "abc123", {"HostedZoneId": "Z1"})
    assert values["ImageTag"] == "abc123" and values["HostedZoneId"] == "Z1"
    assert values["RepositoryPrefix"] == "llm-api-dev"
    with pytest.raises(DeployError, match="sets Nonsense, which root.json does not"):
        apply.deploy_values(target(), "abc123", {"Nonsense": "1"})
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "root.json").write_text(json.dumps({"Parameters": {
        "ProjectName": {"Type": "String"}, "EnvironmentName": {"Type": "String"},
        "Needed": {"Type": "String"}}}))
    partial = target(templates=templates)
    partial.params = {"ProjectName": "llm-api", "EnvironmentName": "dev"}
    with pytest.raises(DeployError, match="root.json needs Needed"):
        apply.deploy_values(partial, "abc123", {})
    # A root without ImageTag/RepositoryPrefix gets neither.
    assert apply.deploy_values(partial, "abc123", {"Needed": "x"}) == {
        "ProjectName": "llm-api", "EnvironmentName": "dev", "Needed": "x"}

@pytest.mark.parametrize(("text", "advice"), [
    ("Stack:x is in ROLLBACK_COMPLETE state and can not be updated", "make teardown"),
    ("Parameters: [VpcId] must have values", "params/<env>.json"),
    ("Embedded stack Security failed: Missing parameter VpcId", "stacks/root.py"),
    ("You have requested more vCPU capacity... VcpuLimitExceeded", "Service Quotas"),
    ("Resource of type 'AWS::Logs::LogGroup' with identifier 'x' already exists.", "retained"),
])
def test_common_aws_errors_come_with_what_to_do(text, advice):
    assert advice in hint_for(text)


# ---------------------------------------------------------------------------------------------
# One change-set path: create (nested stacks), wait (boto3 waiter), show, execute, events
# ---------------------------------------------------------------------------------------------

REGISTRY_CS = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/deploy-x/1"
REGISTRY = f"{ROOT}-registry"


def expect_registry_change_set(cfn, target_):
    body = (target_.templates_dir / "registry.json").read_text()
    cfn.add_response("describe_stacks", {"Stacks": [stack(REGISTRY)]}, {"StackName": REGISTRY})
    cfn.add_response("create_change_set", {"Id": REGISTRY_CS, "StackId": stack(REGISTRY)[
        "StackId"]}, {
        "StackName": REGISTRY, "ChangeSetName": ANY, "ChangeSetType": "UPDATE",
        "Parameters": [{"ParameterKey": "RepositoryPrefix", "ParameterValue": "llm-api-dev"}],
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        "Tags": [{"Key": "Project", "Value": "llm-api"}, {"Key": "Environment", "Value": "dev"}],
        "IncludeNestedStacks": True, "Description": ANY, "TemplateBody": body})


def registry_event(n: int, status: str, reason: str = "", logical: str = REGISTRY) -> dict:
    return {"StackId": stack(REGISTRY)["StackId"], "StackName": REGISTRY, "EventId": f"r{n}",
            "LogicalResourceId": logical, "ResourceType": "AWS::ECR::Repository",
            "Timestamp": NOW, "ResourceStatus": status, "ResourceStatusReason": reason}


def expect_registry_poll(cfn, events):
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": []},
                     {"StackName": REGISTRY})
    cfn.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": REGISTRY})


def test_deploy_stack_creates_shows_executes_the_change_set_and_prints_events(stubs, capsys):
    """The deploy path is boto3's change set, not `aws cloudformation deploy`: the Stubber
    pins every call, in order, and fails on any other (the CLI would make none of these)."""
    cfn = stubs("cloudformation")[1]
    expect_registry_change_set(cfn, target())
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"},
                     {"ChangeSetName": REGISTRY_CS})  # boto3's waiter
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": [
        {"Type": "Resource", "ResourceChange": {
            "Action": "Modify", "LogicalResourceId": "GatewayRepository",
            "ResourceType": "AWS::ECR::Repository", "Replacement": "False",
            "Details": [{"Target": {"Attribute": "Properties", "Name": "LifecyclePolicy"}}]}}]},
        {"ChangeSetName": REGISTRY_CS})
    expect_registry_poll(cfn, [registry_event(1, "UPDATE_COMPLETE")])  # prime: history
    cfn.add_response("execute_change_set", {}, {"ChangeSetName": REGISTRY_CS})
    expect_registry_poll(cfn, [registry_event(2, "UPDATE_IN_PROGRESS", "User Initiated"),
                               registry_event(1, "UPDATE_COMPLETE")])
    cfn.add_response("describe_stacks", {"Stacks": [stack(REGISTRY, "UPDATE_IN_PROGRESS")]},
                     {"StackName": stack(REGISTRY)["StackId"]})
    expect_registry_poll(cfn, [registry_event(3, "UPDATE_COMPLETE", logical="GatewayRepository"),
                               registry_event(2, "UPDATE_IN_PROGRESS")])
    cfn.add_response("describe_stacks", {"Stacks": [stack(REGISTRY)]},
                     {"StackName": stack(REGISTRY)["StackId"]})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tools.deploy.events.time.sleep", lambda s: None)
        result = apply.deploy_stack(aws_with(stubs, "cloudformation"), target(),
                                    target().template("registry.json"), REGISTRY,
                                    {"RepositoryPrefix": "llm-api-dev"}, package=False)
    assert result is not None and result.id == REGISTRY_CS
    out = capsys.readouterr().out
    table = out.index("GatewayRepository")
    assert table < out.index("executing the change set") < out.index("User Initiated")
    assert out.count("UPDATE_COMPLETE") == 1  # the primed history is not printed again
    assert "GatewayRepository" in out.split("executing the change set")[1]


@pytest.mark.parametrize("how", ["failed change set", "refused at create"])
def test_deploy_stack_with_nothing_to_change_says_so(stubs, capsys, how):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(REGISTRY)]}, {"StackName": REGISTRY})
    if how == "refused at create":
        cfn.add_client_error("create_change_set", service_error_code="ValidationError",
                             service_message="No updates are to be performed.")
    else:
        cfn.add_response("create_change_set", {"Id": REGISTRY_CS, "StackId": "x"})
        cfn.add_response("describe_change_set", {
            "Status": "FAILED", "StatusReason": "The submitted information didn't contain "
            "changes. Submit different information to create a change set."},
            {"ChangeSetName": REGISTRY_CS})
        cfn.add_response("delete_change_set", {}, {"ChangeSetName": REGISTRY_CS})
    assert apply.deploy_stack(aws_with(stubs, "cloudformation"), target(),
                              target().template("registry.json"), REGISTRY,
                              {"RepositoryPrefix": "llm-api-dev"}, package=False) is None
    assert "No changes to deploy" in capsys.readouterr().out


def test_a_rolled_back_update_names_the_first_failed_resource(stubs):
    cfn = stubs("cloudformation")[1]
    expect_registry_change_set(cfn, target())
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"},
                     {"ChangeSetName": REGISTRY_CS})
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "Changes": []},
                     {"ChangeSetName": REGISTRY_CS})
    expect_registry_poll(cfn, [])
    cfn.add_response("execute_change_set", {}, {"ChangeSetName": REGISTRY_CS})
    expect_registry_poll(cfn, [
        registry_event(3, "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed "
                       "to update: [GatewayRepository]."),
        registry_event(2, "UPDATE_FAILED", "Resource handler returned message: Access Denied "
                       "(AccessDenied)", logical="GatewayRepository")])
    cfn.add_response("describe_stacks", {"Stacks": [stack(REGISTRY, "UPDATE_ROLLBACK_COMPLETE")]},
                     {"StackName": stack(REGISTRY)["StackId"]})
    with pytest.raises(DeployError, match="GatewayRepository.*UPDATE_FAILED") as error:
        apply.deploy_stack(aws_with(stubs, "cloudformation"), target(),
                           target().template("registry.json"), REGISTRY,
                           {"RepositoryPrefix": "llm-api-dev"}, package=False)
    assert "permission" in error.value.hint


# ---------------------------------------------------------------------------------------------
# Preflight (tools/preflight) runs first; a failed check stops the deploy
# ---------------------------------------------------------------------------------------------


def test_deploy_runs_preflight_before_it_touches_anything(monkeypatch):
    calls = []

    def failing(aws, target_, *, values, image_tag, out):
        calls.append((target_.env, image_tag, values["ImageTag"]))
        out("[FAILED]          GPU vCPU quota")
        return False

    monkeypatch.setattr(preflight_runner, "run_preflight", failing)
    monkeypatch.setattr(apply, "check_images", lambda *a: pytest.fail("images checked first"))
    with pytest.raises(DeployError, match="preflight failed") as raised:
        apply.deploy(Aws(clients={"region": REGION}), target(), "abc123", {}, rehearsal=False,
                     wait_timeout=None)
    assert calls == [("dev", "abc123", "abc123")]  # the values and tag this deploy would use
    assert "--skip-preflight" in raised.value.hint and "make preflight ENV=dev" in raised.value.hint


def test_skip_preflight_is_said_loudly_and_skips_it(monkeypatch, capsys):
    monkeypatch.setattr(preflight_runner, "run_preflight",
                        lambda *a, **k: pytest.fail("preflight ran"))

    def stop(*args):
        raise DeployError("stopped after preflight")

    monkeypatch.setattr(apply, "check_images", stop)
    with pytest.raises(DeployError, match="stopped after preflight"):
        apply.deploy(Aws(clients={"region": REGION}), target(), "abc123", {}, rehearsal=False,
                     wait_timeout=None, skip_preflight=True)
    out = capsys.readouterr().out
    assert "WARNING: --skip-preflight" in out and "did NOT run" in out and "!" * 78 in out


def test_the_deploy_cli_runs_preflight_as_a_step(monkeypatch):
    from tools.deploy import cli
    from tools.preflight import cli as preflight_cli

    seen = []
    monkeypatch.setattr(cli, "resolve_target", lambda env, aws, templates: target(env))
    monkeypatch.setattr(preflight_cli, "main", lambda argv, aws: seen.append(argv) or 1)
    assert cli.main(["preflight", "dev"], aws=Aws(clients={"region": REGION})) == 1
    assert seen == [["dev"]]


@pytest.mark.parametrize("environ, region", [
    ({"AWS_REGION": "eu-west-1"}, "eu-west-1"),  # what the docs tell users to set
    ({"AWS_DEFAULT_REGION": "eu-central-1"}, "eu-central-1"),
    ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-central-1"}, "eu-west-1"),
])
def test_the_session_takes_the_region_from_aws_region_as_the_docs_say(monkeypatch, environ,
                                                                       region):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert Aws().region == region
