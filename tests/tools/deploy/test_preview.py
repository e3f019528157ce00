"""preview: one change set with nested stacks, printed as one table and kept for review."""

from __future__ import annotations

import shutil

import pytest
from botocore.stub import ANY, Stubber

from tests.tools.deploy.stubs import ACCOUNT, REGION, ROOT, aws_with, missing, stack, target
from tools import params as params_file
from tools.deploy import apply, images, preview
from tools.deploy.target import DeployError

ROOT_CS = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/preview-x/1"

SERVICE_CS = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/nested-service/2"

BODY = '{"Resources": {}}'

def expect_change_set(cfn: Stubber, change_type: str, tag: str = "abc123def456") -> None:
    values = apply.deploy_values(target(), tag, {})
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
    # The night-cap read (tools/deploy/nightcap.py): a stack without an ECS service has none.
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": []}, {"StackName": ROOT})

    rc = preview.preview(aws_with(stubs, "cloudformation"), target(), "abc123def456", {}, BODY)

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
    assert preview.preview(aws_with(stubs, "cloudformation"), target(), "abc123def456", {},
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
    assert preview.preview(aws_with(stubs, "cloudformation"), target(), "abc123def456", {},
                          BODY) == 0
    assert "no changes" in capsys.readouterr().out

def test_preview_refuses_a_stack_whose_first_create_failed(stubs):
    cfn = stubs("cloudformation")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(status="ROLLBACK_COMPLETE")]},
                     {"StackName": ROOT})
    with pytest.raises(DeployError, match="ROLLBACK_COMPLETE") as error:
        preview.preview(aws_with(stubs, "cloudformation"), target(), "abc123def456", {}, BODY)
    assert "make teardown" in error.value.hint

def test_preview_without_an_image_tag_says_how_to_get_one(stubs, monkeypatch, tmp_path):
    monkeypatch.setattr(images, "RECORD_DIR", tmp_path)
    with pytest.raises(DeployError, match="no image tag") as error:
        preview.preview(aws_with(stubs), target(), None, {}, BODY)
    assert "make images ENV=dev" in error.value.hint
