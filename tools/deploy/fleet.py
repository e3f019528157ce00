"""What a deploy does to the GPU fleet: the AMI and the launch template.

The GPU AMI is a root parameter of type AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>, which
CloudFormation reads from Parameter Store at every create and update (AWS CloudFormation User
Guide, "Specify existing resources at runtime with CloudFormation-supplied parameter types",
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-supplied-parameter-types.html);
a change set and a stack show the value they use as the parameter's ResolvedValue
(https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_Parameter.html). A new AMI
(or InstanceType) makes a new launch template version, and the group uses the latest one
(templates/cluster.json: LaunchTemplate.LatestVersionNumber) for instances it launches from
then on. Running instances are scale-in protected and keep their version, so the fleet mixes
AMIs until `make roll` replaces them. preview and deploy say so; they never roll by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.cluster import AMI_ID
from tools import stackwatch
from tools.deploy.changeset import ChangeSet
from tools.deploy.target import Aws, DeployError, aws_call, say

AMI_PARAMETER = AMI_ID  # the root parameter that names the GPU AMI's SSM parameter
LAUNCH_TEMPLATE = "AWS::EC2::LaunchTemplate"
GROUP = "AWS::AutoScaling::AutoScalingGroup"


@dataclass(frozen=True)
class LaunchTemplate:
    id: str
    version: int
    image_id: str
    instance_type: str

    def describe(self) -> str:
        return f"version {self.version} ({self.image_id}, {self.instance_type})"


def resolved(parameters: list[dict], key: str = AMI_PARAMETER) -> str:
    found = next((p for p in parameters or [] if p.get("ParameterKey") == key), {})
    return found.get("ResolvedValue") or ""


def report_ami(stack: dict | None, change_set: ChangeSet, env: str) -> str | None:
    """Say which AMI the change set resolves and whether it differs from the stack's now."""
    new = resolved(change_set.described.get("Parameters", []))
    old = resolved((stack or {}).get("Parameters", []))
    templates = [c for c in change_set.changes if c.resource_type == LAUNCH_TEMPLATE]
    if not new:
        return None
    if old and old != new:
        say(f"GPU AMI: {AMI_PARAMETER} now resolves to {new}; the stack runs {old}. The launch "
            "template gets a new version; running instances keep the old AMI until "
            f"`make roll ENV={env}` replaces them (new instances get {new})")
    elif templates:
        say(f"GPU AMI: unchanged ({new}); the launch template changes "
            f"({', '.join(c.details or c.action for c in templates)}): running instances keep "
            f"the old version until `make roll ENV={env}`")
    else:
        say(f"GPU AMI: unchanged ({new})")
    return new


def launch_templates(aws: Aws, stack_name: str) -> list[LaunchTemplate]:
    """The latest version of every launch template in the stack tree ([] if no stack yet)."""
    cfn, ec2 = aws.client("cloudformation"), aws.client("ec2")
    if aws_call(lambda: stackwatch.describe_stack(cfn, stack_name), "describe") is None:
        return []
    tree = aws_call(lambda: stackwatch.stack_tree(cfn, stack_name), "list the stack's resources")
    found = []
    for _, resource in stackwatch.resources_of_type(tree, LAUNCH_TEMPLATE):
        physical = resource.get("PhysicalResourceId")
        if not physical:
            continue
        version = aws_call(lambda p=physical: ec2.describe_launch_template_versions(
            LaunchTemplateId=p, Versions=["$Latest"])["LaunchTemplateVersions"][0],
            f"read launch template {physical}")
        data = version.get("LaunchTemplateData", {})
        found.append(LaunchTemplate(physical, int(version["VersionNumber"]),
                                    data.get("ImageId", ""), data.get("InstanceType", "")))
    return found


def snapshot(aws: Aws, stack_name: str) -> list[LaunchTemplate] | None:
    """launch_templates(), or None (said) when they cannot be read: a report, never a failure."""
    try:
        return launch_templates(aws, stack_name)
    except DeployError as error:
        say(f"  (launch template not readable: {error.message[:200]})")
        return None


def report_launch_templates(before: list[LaunchTemplate] | None,
                            after: list[LaunchTemplate] | None, env: str) -> bool:
    """After a deploy: did a launch template get a new version? Says what changed."""
    if before is None or after is None:
        return False
    old = {t.id: t for t in before}
    changed = False
    for template in after:
        previous = old.get(template.id)
        if previous is None or previous.version == template.version:
            continue
        changed = True
        what = [f"ImageId {previous.image_id} -> {template.image_id}"
                if previous.image_id != template.image_id else "",
                f"InstanceType {previous.instance_type} -> {template.instance_type}"
                if previous.instance_type != template.instance_type else ""]
        say(f"launch template {template.id}: version {previous.version} -> {template.version}"
            f" ({', '.join(w for w in what if w) or 'other settings'}). Running GPU instances "
            f"are scale-in protected and keep version {previous.version}; replace them, "
            f"keeping the service up, with: make roll ENV={env}")
    if not changed and after:
        say(f"launch template unchanged: {after[0].describe()}")
    return changed
