"""Watch CloudFormation work: stack events as they arrive, the nested stack tree, change sets.

Everything here takes a boto3 CloudFormation client and makes only read calls (describe/list/
get), so botocore's Stubber can test it without AWS. tools.deploy drives it.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

NESTED_STACK = "AWS::CloudFormation::Stack"
# Retained on delete: teardown lists these as kept.
RETAINING_POLICIES = ("Retain", "RetainExceptOnCreate", "Snapshot")
# Event reasons that only echo an earlier failure; the first real failure is what matters.
ECHO_REASONS = ("Resource creation cancelled", "Resource update cancelled",
                "The following resource(s) failed to", "Embedded stack", "Cancellation")


def say(message: str = "") -> None:
    print(message, flush=True)


def stack_missing(error: ClientError) -> bool:
    return (error.response.get("Error", {}).get("Code") == "ValidationError"
            and "does not exist" in error.response.get("Error", {}).get("Message", ""))


def describe_stack(cfn, name: str) -> dict | None:
    """The stack, or None when there is none (a deleted stack counts as none)."""
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as error:
        if stack_missing(error):
            return None
        raise
    if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
        return None
    return stacks[0]


def outputs_of(stack: dict | None) -> dict[str, str]:
    return {o["OutputKey"]: o.get("OutputValue", "") for o in (stack or {}).get("Outputs", [])}


# ---------------------------------------------------------------------------------------------
# The nested stack tree
# ---------------------------------------------------------------------------------------------


@dataclass
class StackNode:
    """One stack of the tree: root ("root") or a nested stack (its logical ID in the parent)."""

    label: str
    stack_id: str
    resources: list[dict] = field(default_factory=list)

    def of_type(self, resource_type: str) -> list[dict]:
        return [r for r in self.resources if r["ResourceType"] == resource_type]


def list_resources(cfn, stack_id: str) -> list[dict]:
    resources, token = [], None
    while True:
        kwargs = {"StackName": stack_id, **({"NextToken": token} if token else {})}
        page = cfn.list_stack_resources(**kwargs)
        resources += page["StackResourceSummaries"]
        token = page.get("NextToken")
        if not token:
            return resources


def stack_tree(cfn, root: str, max_depth: int = 3) -> list[StackNode]:
    """Root first, then every nested stack that has a physical ID, depth first."""
    nodes: list[StackNode] = []

    def visit(label: str, stack_id: str, depth: int) -> None:
        node = StackNode(label, stack_id, list_resources(cfn, stack_id))
        nodes.append(node)
        if depth >= max_depth:
            return
        for resource in node.of_type(NESTED_STACK):
            physical = resource.get("PhysicalResourceId")
            if physical and not resource.get("ResourceStatus", "").startswith("DELETE_COMPLETE"):
                child = resource["LogicalResourceId"]
                visit(child if label == "root" else f"{label}.{child}", physical, depth + 1)

    visit("root", root, 0)
    return nodes


def resources_of_type(tree: list[StackNode], resource_type: str) -> list[tuple[str, dict]]:
    return [(node.label, r) for node in tree for r in node.of_type(resource_type)]


# ---------------------------------------------------------------------------------------------
# Stack events as they arrive
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    stack: str
    logical_id: str
    resource_type: str
    status: str
    reason: str

    def line(self) -> str:
        return f"{self.stack}/{self.logical_id} ({self.resource_type}) {self.status}: {self.reason}"


def _when(event: dict) -> float:
    when = event.get("Timestamp")
    return when.timestamp() if hasattr(when, "timestamp") else 0.0


class EventWatcher:
    """Prints new events of a root stack and all its nested stacks, oldest first.

    prime() marks what exists already as seen, so a deploy shows only its own events. Polling
    reads each stack's newest page(s) until it meets a seen event.
    """

    def __init__(self, cfn, root: str, out: Callable[[str], None] = say):
        self.cfn = cfn
        self.root = root
        self.out = out
        self.seen: set[str] = set()
        self.labels: dict[str, str] = {}  # stack id or name -> label
        self.failures: list[Failure] = []

    def _stacks(self) -> list[tuple[str, str]]:
        try:
            tree = stack_tree(self.cfn, self.root)
        except ClientError as error:
            if stack_missing(error):
                return []
            raise
        return [(node.label, node.stack_id) for node in tree]

    def _new_events(self, stack_id: str) -> list[dict]:
        fresh, token = [], None
        while True:
            kwargs = {"StackName": stack_id, **({"NextToken": token} if token else {})}
            try:
                page = self.cfn.describe_stack_events(**kwargs)
            except ClientError as error:
                if stack_missing(error):
                    return fresh
                raise
            for event in page["StackEvents"]:
                if event["EventId"] in self.seen:
                    return fresh
                fresh.append(event)
            token = page.get("NextToken")
            if not token:
                return fresh

    def prime(self) -> None:
        for _, stack_id in self._stacks():
            for event in self._new_events(stack_id):
                self.seen.add(event["EventId"])

    def poll(self) -> None:
        fresh = []
        for label, stack_id in self._stacks():
            for event in self._new_events(stack_id):
                self.seen.add(event["EventId"])
                fresh.append((label, event))
        # Oldest first across all stacks (each stack's page is newest first; sorted is stable).
        for label, event in sorted(reversed(fresh), key=lambda item: _when(item[1])):
            self._print(label, event)

    def _print(self, label: str, event: dict) -> None:
        when = event.get("Timestamp")
        clock = when.strftime("%H:%M:%S") if hasattr(when, "strftime") else "--:--:--"
        status = event.get("ResourceStatus", "")
        reason = event.get("ResourceStatusReason") or ""
        self.out(f"  {clock}  {label:<14.14} {event.get('LogicalResourceId', ''):<28.28} "
                 f"{status:<20} {reason}".rstrip())
        if status.endswith("_FAILED"):
            self.failures.append(Failure(label, event.get("LogicalResourceId", ""),
                                         event.get("ResourceType", ""), status, reason))

    def first_failure(self) -> Failure | None:
        """The failure that caused the others (not the cancellations it triggered)."""
        for failure in self.failures:
            if not failure.reason.startswith(ECHO_REASONS):
                return failure
        return self.failures[0] if self.failures else None


# ---------------------------------------------------------------------------------------------
# Change sets, nested ones included
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    stack: str
    action: str
    logical_id: str
    resource_type: str
    replacement: str
    details: str
    expanded: bool = False  # a nested stack whose own changes follow in the list
    # Every detail's Evaluation: "Static" (CloudFormation knows the value changes) or "Dynamic"
    # (it "can't determine the target value because it depends on the result of an intrinsic
    # function", https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/
    # API_ResourceChangeDetail.html): a Modify of Dynamic details only may change nothing.
    evaluations: tuple[str, ...] = ()


def change_set_pages(cfn, change_set: str, stack: str | None = None,
                     first: dict | None = None) -> Iterator[dict]:
    """Every page of a change set; `first` is a first page already read (not read again)."""
    token = None
    if first is not None:
        yield first
        token = first.get("NextToken")
        if not token:
            return
    while True:
        kwargs = {"ChangeSetName": change_set, **({"StackName": stack} if stack else {}),
                  **({"NextToken": token} if token else {})}
        page = cfn.describe_change_set(**kwargs)
        yield page
        token = page.get("NextToken")
        if not token:
            return


def _details(change: dict) -> str:
    names = []
    for detail in change.get("Details", []):
        target = detail.get("Target", {})
        name = target.get("Name") or target.get("Attribute", "")
        if target.get("Attribute") == "Tags":
            name = "Tags"
        if name and name not in names:
            names.append(name)
    return ", ".join(names)


def collect_changes(cfn, change_set_id: str, label: str = "root", depth: int = 0,
                    first: dict | None = None) -> list[Change]:
    """Every resource change of a change set and of its nested change sets (depth first)."""
    changes: list[Change] = []
    for page in change_set_pages(cfn, change_set_id, first=first):
        for item in page.get("Changes", []):
            change = item.get("ResourceChange", {})
            logical = change.get("LogicalResourceId", "")
            nested_id = change.get("ChangeSetId")
            expand = bool(nested_id) and change.get("ResourceType") == NESTED_STACK and depth < 3
            changes.append(Change(
                stack=label, action=change.get("Action", ""), logical_id=logical,
                resource_type=change.get("ResourceType", ""),
                replacement=change.get("Replacement", "") or "",
                details=_details(change), expanded=expand,
                evaluations=tuple(d.get("Evaluation", "") for d in change.get("Details", [])),
            ))
            if expand:
                child = logical if label == "root" else f"{label}.{logical}"
                changes += collect_changes(cfn, nested_id, child, depth + 1)
    return changes


REPLACEMENT_TEXT = {"True": "YES", "Conditional": "maybe", "False": "", "": ""}


def change_table(changes: list[Change], width: int | None = None) -> list[str]:
    """A table a reviewer reads in one screen: one line per changed resource."""
    width = width or shutil.get_terminal_size((120, 40)).columns
    rows = sorted((c for c in changes if not c.expanded), key=lambda c: (c.stack != "root",
                                                                         c.stack))
    header = ("STACK", "ACTION", "RESOURCE", "TYPE", "REPLACE", "CHANGED")
    body = [(c.stack, c.action, c.logical_id, c.resource_type.removeprefix("AWS::"),
             REPLACEMENT_TEXT.get(c.replacement, c.replacement), c.details) for c in rows]
    fixed = [14, 7, 28, 34, 7]
    lines = []
    for row in [header, *body]:
        cells = [f"{str(cell)[:size]:<{size}}" for cell, size in zip(row, fixed, strict=False)]
        line = " ".join(cells) + " " + str(row[5])
        lines.append(line[:max(width, 80)].rstrip())
    return lines


def change_summary(changes: list[Change]) -> str:
    rows = [c for c in changes if not c.expanded]
    stacks = sorted({c.stack for c in rows})
    counts = {action: sum(1 for c in rows if c.action == action)
              for action in ("Add", "Modify", "Remove", "Import", "Dynamic")}
    replaced = sum(1 for c in rows if c.replacement == "True")
    maybe = sum(1 for c in rows if c.replacement == "Conditional")
    parts = [f"{n} {action.lower()}" for action, n in counts.items() if n]
    text = f"{len(rows)} resource change(s) in {len(stacks)} stack(s): " + (", ".join(parts) or
                                                                             "none")
    if replaced or maybe:
        text += f"; {replaced} replacement(s), {maybe} conditional"
    return text


def print_lines(lines: list[str], stream=None) -> None:
    stream = stream or sys.stdout
    for line in lines:
        print(line, file=stream)
    stream.flush()
