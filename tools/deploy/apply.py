"""make deploy ENV=<env>: preflight, package, one change set (nested stacks included) executed
while root and nested events print, then the fleet report, the service wait, the task
definition check and the smoke test (tools/deploy/verify.py).

The manual path is the plain AWS CLI (`aws cloudformation package` + `aws cloudformation
deploy`, README "Deploy"); this step does the same through boto3 so it can show the nested
changes before executing them and print events while CloudFormation works.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from stacks import names
from tools import stackwatch
from tools.deploy import changeset, fleet, nightcap, verify
from tools.deploy.events import StackEvents, wait_for_stack
from tools.deploy.images import check_images, read_record
from tools.deploy.local import package
from tools.deploy.target import (
    ROOT_TEMPLATE,
    Aws,
    DeployError,
    Target,
    aws_call,
    hint_for,
    print_outputs,
    say,
)

PLACEHOLDER_TAG = "rehearsal-placeholder"


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DeployError(f"--parameter {pair!r} is not KEY=VALUE")
        values[key] = value
    return values


def resolve_image_tag(target: Target, explicit: str | None, rehearsal: bool) -> str | None:
    if explicit:
        return explicit
    if rehearsal:
        return PLACEHOLDER_TAG
    record = read_record(target.env)
    if record and record.get("image_tag"):
        return record["image_tag"]
    return None


def deploy_values(target: Target, image_tag: str | None,
                  overrides: dict[str, str]) -> dict[str, str]:
    """params/ENV.json + the deploy-time values root declares + overrides, checked against root."""
    declared = target.root_parameters()
    values = dict(target.params)
    if names.REPOSITORY_PREFIX in declared:
        values.setdefault(names.REPOSITORY_PREFIX, target.repository_prefix)
    if names.IMAGE_TAG in declared:
        if not image_tag:
            raise DeployError("no image tag: the template needs ImageTag",
                              f"run make images ENV={target.env} (records the tag), or pass "
                              "--image-tag TAG (make deploy IMAGE_TAG=...)")
        values[names.IMAGE_TAG] = image_tag
    values.update(overrides)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise DeployError(f"params/{target.env}.json (or --parameter) sets {', '.join(unknown)}, "
                          f"which {ROOT_TEMPLATE} does not declare",
                          hint_for("do not exist in the template"))
    missing = sorted(k for k, v in declared.items() if "Default" not in v and k not in values)
    if missing:
        raise DeployError(f"{ROOT_TEMPLATE} needs {', '.join(missing)}, which params/"
                          f"{target.env}.json does not set", hint_for("must have values"))
    return values


def stack_ready_for_change(aws: Aws, stack_name: str) -> dict | None:
    """The stack if it can take a change set now; None if it does not exist; else an error."""
    cfn = aws.client("cloudformation")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, stack_name), f"describe {stack_name}")
    if stack is None:
        return None
    status = stack["StackStatus"]
    if status == "ROLLBACK_COMPLETE":
        raise DeployError(f"stack {stack_name} is ROLLBACK_COMPLETE: its first create failed",
                          hint_for("ROLLBACK_COMPLETE"))
    if status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(f"stack {stack_name} is {status}", hint_for("_IN_PROGRESS state"))
    if status == "UPDATE_ROLLBACK_FAILED":
        raise DeployError(f"stack {stack_name} is {status}", hint_for(status))
    return stack


def template_text(target: Target, template: Path, packaged: bool) -> str:
    if not packaged:
        return template.read_text()
    with tempfile.TemporaryDirectory(prefix="llm-api-deploy-") as tmp:
        return package(target, template, Path(tmp) / "packaged.json").read_text()


def deploy_stack(aws: Aws, target: Target, template: Path, stack_name: str,
                 values: dict[str, str], package: bool,
                 report: Callable[[dict | None, changeset.ChangeSet], object] | None = None
                 ) -> changeset.ChangeSet | None:
    """(package,) change set, show it, execute it, print events until the stack settles."""
    stack = stack_ready_for_change(aws, stack_name)
    body = template_text(target, template, package)
    kind = changeset.change_set_kind(stack)
    change_set = changeset.create(aws, target, stack_name, values, body, kind, "deploy")
    if change_set is None:
        say(f"No changes to deploy: stack {stack_name} already matches the template and "
            f"params/{target.env}.json")
    else:
        changeset.show(change_set)
        if report:
            report(stack, change_set)
        events = StackEvents(aws, stack_name)
        events.prime()  # what exists already is history, not this deploy's news
        changeset.execute(aws, change_set)
        say(f"executing the change set on {stack_name} ({len(values)} parameters); events as "
            "they arrive:")
        wait_for_stack(aws, events, change_set.stack_id, kind.lower())
        say(f"stack {stack_name}: {kind.lower()} complete")
    if target.is_prod:
        protect(aws, stack_name)
    return change_set


def protect(aws: Aws, stack_name: str) -> None:
    cfn = aws.client("cloudformation")
    aws_call(lambda: cfn.update_termination_protection(EnableTerminationProtection=True,
                                                       StackName=stack_name),
             f"turn on termination protection of {stack_name}")
    say(f"termination protection on for {stack_name}")


def run_preflight(aws: Aws, target: Target, values: dict[str, str], tag: str | None,
                  skip: bool) -> None:
    """The read-only account checks (tools/preflight) before anything changes; a failed check
    stops the deploy, a check that could not run warns (make preflight STRICT=1 refuses)."""
    if skip:
        bar = "!" * 78
        say(bar)
        say(f"WARNING: --skip-preflight: the read-only checks of account {target.account} did "
            "NOT run (GPU vCPU quota, AZ offerings, certificate or hosted zone, AMI parameter, "
            "images, artifact bucket). A failure they would have named now shows up as a "
            "failed or hanging deploy.")
        say(bar)
        return
    from tools.preflight.runner import run_preflight as checks  # the checks import this package

    if not checks(aws, target, values=values, image_tag=tag, out=say):
        raise DeployError("preflight failed: the account cannot take this deploy as it is",
                          "fix the lines marked [FAILED] above (make preflight ENV="
                          f"{target.env} runs the checks alone), or deploy with --skip-preflight")


def deploy(aws: Aws, target: Target, image_tag: str | None, overrides: dict[str, str],
           rehearsal: bool, wait_timeout: int | None, skip_preflight: bool = False,
           keep_night_cap: bool = False) -> int:
    if rehearsal:
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        if urlparse(endpoint).hostname not in ("localhost", "127.0.0.1"):
            raise DeployError("--rehearsal deploys only to a local emulator "
                              "(AWS_ENDPOINT_URL=http://localhost:PORT)",
                              "run make rehearse; a real deploy takes no --rehearsal")
    declared = target.root_parameters()
    tag = resolve_image_tag(target, image_tag, rehearsal)
    values = deploy_values(target, tag, overrides)
    say(f"deploy {target.env}: stack {target.root_stack}, account {target.account}, region "
        f"{target.region}" + (f", images {tag}" if names.IMAGE_TAG in declared else ""))
    run_preflight(aws, target, values, tag, skip_preflight)
    if names.IMAGE_TAG in declared and not rehearsal:
        check_images(aws, target, tag or "")
    before = fleet.snapshot(aws, target.root_stack)
    night: list[nightcap.NightCap | None] = [None]

    def report(stack: dict | None, change_set: changeset.ChangeSet) -> None:
        fleet.report_ami(stack, change_set, target.env)
        # Read only when a change set will execute on an existing stack (nothing to say else).
        night[0] = nightcap.read(aws, target.root_stack) if stack else None
        nightcap.report(night[0], change_set, values, keep_night_cap, target.env)

    try:
        deploy_stack(aws, target, target.template(ROOT_TEMPLATE), target.root_stack, values,
                     package=True, report=report)
        result = after_stack(aws, target, values, before, rehearsal, wait_timeout)
    except Exception:
        # A rollback re-registers the target too: say (and with keep, fix) the cap even then,
        # without hiding the deploy's own error.
        nightcap.after(aws, night[0], target.root_stack, values, keep_night_cap, quiet=True)
        raise
    nightcap.after(aws, night[0], target.root_stack, values, keep_night_cap)
    return result


def after_stack(aws: Aws, target: Target, values: dict[str, str],
                before: list[fleet.LaunchTemplate] | None, rehearsal: bool,
                wait_timeout: int | None) -> int:
    """The fleet report, the outputs and (not in a rehearsal) the service verification."""
    fleet.report_launch_templates(before, fleet.snapshot(aws, target.root_stack), target.env)
    cfn = aws.client("cloudformation")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.root_stack),
                     f"read stack {target.root_stack}")
    outputs = stackwatch.outputs_of(stack)
    say(f"stack {target.root_stack}: {stack['StackStatus'] if stack else 'missing'}; outputs:")
    print_outputs(outputs)
    if rehearsal:
        say("REHEARSAL: skipped the image check, the service-stability wait, the task "
            "definition check and the smoke test (the emulator runs no tasks)")
        return 0
    return verify.verify_service(aws, target, values, outputs, wait_timeout)
