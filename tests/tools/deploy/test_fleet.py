"""preview and deploy say when the GPU AMI or the launch template changes (and never roll)."""

from __future__ import annotations

from tests.tools.deploy.stubs import ROOT, aws_with, resource, stack
from tools import stackwatch
from tools.deploy import fleet
from tools.deploy.changeset import ChangeSet

AMI_KEY = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"


def ami_parameter(value: str) -> list[dict]:
    return [{"ParameterKey": "GpuAmiId", "ParameterValue": AMI_KEY, "ResolvedValue": value}]


def change_set(ami: str, changes=()) -> ChangeSet:
    return ChangeSet(id="cs", stack_id="s", kind="UPDATE",
                     described={"Parameters": ami_parameter(ami)}, changes=list(changes))


def test_a_newly_resolved_ami_is_named_with_the_roll_command(capsys):
    fleet.report_ami(stack(Parameters=ami_parameter("ami-old")), change_set("ami-new"), "dev")
    out = capsys.readouterr().out
    assert "GpuAmiId now resolves to ami-new; the stack runs ami-old" in out
    assert "make roll ENV=dev" in out


def test_an_instance_type_change_without_a_new_ami_is_named_too(capsys):
    template = stackwatch.Change("Cluster", "Modify", "LaunchTemplate",
                                 "AWS::EC2::LaunchTemplate", "False", "LaunchTemplateData")
    fleet.report_ami(stack(Parameters=ami_parameter("ami-1")), change_set("ami-1", [template]),
                     "prod")
    out = capsys.readouterr().out
    assert "GPU AMI: unchanged (ami-1); the launch template changes (LaunchTemplateData)" in out
    assert "make roll ENV=prod" in out


def test_an_unchanged_ami_says_so(capsys):
    fleet.report_ami(stack(Parameters=ami_parameter("ami-1")), change_set("ami-1"), "dev")
    out = capsys.readouterr().out
    assert "GPU AMI: unchanged (ami-1)" in out and "make roll" not in out


def test_a_new_launch_template_version_after_deploy_is_reported(stubs, capsys):
    cfn, ec2 = stubs("cloudformation")[1], stubs("ec2")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        resource("Cluster", "AWS::CloudFormation::Stack", "cluster-stack")]}, {"StackName": ROOT})
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        resource("LaunchTemplate", "AWS::EC2::LaunchTemplate", "lt-0abc")]},
        {"StackName": "cluster-stack"})
    ec2.add_response("describe_launch_template_versions", {"LaunchTemplateVersions": [{
        "LaunchTemplateId": "lt-0abc", "VersionNumber": 4, "LaunchTemplateData": {
            "ImageId": "ami-new", "InstanceType": "g6.xlarge"}}]},
        {"LaunchTemplateId": "lt-0abc", "Versions": ["$Latest"]})
    after = fleet.snapshot(aws_with(stubs, "cloudformation", "ec2"), ROOT)
    before = [fleet.LaunchTemplate("lt-0abc", 3, "ami-old", "g5.xlarge")]
    assert fleet.report_launch_templates(before, after, "dev") is True
    out = capsys.readouterr().out
    assert ("launch template lt-0abc: version 3 -> 4 (ImageId ami-old -> ami-new, InstanceType "
            "g5.xlarge -> g6.xlarge)") in out
    assert "keep version 3" in out and "make roll ENV=dev" in out


def test_an_unchanged_launch_template_says_so(capsys):
    same = [fleet.LaunchTemplate("lt-0abc", 3, "ami-1", "g5.xlarge")]
    assert fleet.report_launch_templates(same, same, "dev") is False
    assert "launch template unchanged: version 3 (ami-1, g5.xlarge)" in capsys.readouterr().out


def test_an_unreadable_launch_template_is_said_not_fatal(stubs, capsys):
    cfn = stubs("cloudformation")[1]
    cfn.add_client_error("describe_stacks", service_error_code="AccessDenied",
                         service_message="not allowed")
    assert fleet.snapshot(aws_with(stubs, "cloudformation", "ec2"), ROOT) is None
    assert "launch template not readable" in capsys.readouterr().out
