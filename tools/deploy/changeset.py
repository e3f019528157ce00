"""The one change-set path through boto3, shared by preview and deploy: create the change set
with nested stacks, wait for it with boto3's change-set waiter, show it, execute it.

IncludeNestedStacks makes CloudFormation create a change set per nested stack, so the review
sees every resource change (`aws cloudformation deploy --no-execute-changeset` shows only the
root's: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/change-sets-for-nested-stacks.html).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tools import params as params_file
from tools import stackwatch
from tools.deploy.target import CAPABILITIES, Aws, DeployError, Target, aws_call, hint_for, say

TEMPLATE_BODY_LIMIT = 51_200  # bytes; CreateChangeSet's TemplateBody limit
# What CloudFormation says when a change set would change nothing (FAILED status reason), and
# what some endpoints answer at create time instead.
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


@dataclass
class ChangeSet:
    id: str
    stack_id: str
    kind: str  # CREATE or UPDATE
    described: dict = field(default_factory=dict)
    changes: list[stackwatch.Change] = field(default_factory=list)

    def parameter(self, key: str) -> dict:
        return next((p for p in self.described.get("Parameters", [])
                     if p.get("ParameterKey") == key), {})


def template_argument(aws: Aws, target: Target, body: str) -> dict[str, str]:
    """TemplateBody when it fits the API limit, else an uploaded TemplateURL, path-style on
    the S3 client's own endpoint exactly as `aws cloudformation deploy` builds it
    (awscli/customizations/s3uploader.py, to_path_style_s3_url)."""
    if len(body.encode()) <= TEMPLATE_BODY_LIMIT:
        return {"TemplateBody": body}
    key = f"{target.env}/root-{hashlib.sha256(body.encode()).hexdigest()[:16]}.json"
    s3 = aws.client("s3")
    aws_call(lambda: s3.put_object(Bucket=target.artifact_bucket, Key=key, Body=body.encode()),
             "upload the packaged template")
    return {"TemplateURL": f"{s3.meta.endpoint_url.rstrip('/')}/{target.artifact_bucket}/{key}"}


def change_set_kind(stack: dict | None) -> str:
    return "UPDATE" if stack and stack["StackStatus"] != "REVIEW_IN_PROGRESS" else "CREATE"


def create(aws: Aws, target: Target, stack_name: str, values: dict[str, str], body: str,
           kind: str, purpose: str, delay: int = 5) -> ChangeSet | None:
    """Create the change set and wait for it; None (and the change set deleted) when it would
    change nothing."""
    cfn = aws.client("cloudformation")
    name = f"{purpose}-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    try:
        created = aws_call(lambda: cfn.create_change_set(
            StackName=stack_name, ChangeSetName=name, ChangeSetType=kind,
            Parameters=params_file.as_cloudformation(values), Capabilities=list(CAPABILITIES),
            Tags=[{"Key": k, "Value": v} for k, v in target.tags.items()],
            IncludeNestedStacks=True, Description=f"make {purpose} ENV={target.env}",
            **template_argument(aws, target, body)), f"create a change set for {stack_name}")
    except DeployError as error:
        if any(text in error.message for text in NO_CHANGES):
            return None
        raise
    change_set = ChangeSet(id=created["Id"], stack_id=created["StackId"], kind=kind)
    say(f"{kind} change set for {stack_name} created; waiting for CloudFormation to compute it")
    change_set.described = wait_until_computed(cfn, change_set.id, delay)
    if change_set.described["Status"] == "FAILED":
        reason = change_set.described.get("StatusReason", "")
        if any(text in reason for text in NO_CHANGES):
            aws_call(lambda: cfn.delete_change_set(ChangeSetName=change_set.id),
                     "delete the empty change set")
            return None
        raise DeployError(f"the change set failed: {reason}", hint_for(reason))
    change_set.changes = aws_call(lambda: stackwatch.collect_changes(
        cfn, change_set.id, first=change_set.described), "read the changes")
    return change_set


def wait_until_computed(cfn, change_set_id: str, delay: int = 5) -> dict:
    """boto3's ChangeSetCreateComplete waiter; a FAILED change set comes back, not raised."""
    from botocore.exceptions import WaiterError

    try:
        cfn.get_waiter("change_set_create_complete").wait(
            ChangeSetName=change_set_id, WaiterConfig={"Delay": delay, "MaxAttempts": 360})
    except WaiterError as error:
        last = error.last_response or {}
        if last.get("Status") == "FAILED":
            return last
        detail = last.get("Error", {}).get("Message") or str(error)
        raise DeployError(f"the change set did not complete: {detail}", hint_for(detail)) from None
    return aws_call(lambda: cfn.describe_change_set(ChangeSetName=change_set_id),
                    "read the change set")


def show(change_set: ChangeSet) -> None:
    """One table of every change (root and nested), and a loud line per replacement."""
    say(stackwatch.change_summary(change_set.changes))
    stackwatch.print_lines(stackwatch.change_table(change_set.changes))
    for change in change_set.changes:
        if change.replacement == "True" and not change.expanded:
            say(f"WARNING: {change.stack}/{change.logical_id} ({change.resource_type}) will be "
                "REPLACED (a new physical resource; data in the old one is gone unless "
                "retained)")


def execute(aws: Aws, change_set: ChangeSet) -> None:
    cfn = aws.client("cloudformation")
    aws_call(lambda: cfn.execute_change_set(ChangeSetName=change_set.id),
             "execute the change set")
