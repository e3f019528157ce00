"""make preview ENV=<env>: package, create the change set with nested stacks, print every change
(and what it does to the GPU AMI, the launch template and, at night, the night cap), and keep the
change set for review."""

from __future__ import annotations

from tools.deploy import changeset, fleet, nightcap
from tools.deploy.apply import (
    deploy_values,
    resolve_image_tag,
    stack_ready_for_change,
    template_text,
)
from tools.deploy.target import ROOT_TEMPLATE, Aws, Target, say


def preview(aws: Aws, target: Target, image_tag: str | None, overrides: dict[str, str],
            body: str | None = None) -> int:
    tag = resolve_image_tag(target, image_tag, rehearsal=False)
    values = deploy_values(target, tag, overrides)
    stack = stack_ready_for_change(aws, target.root_stack)
    kind = changeset.change_set_kind(stack)
    say(f"preview {target.env}: {kind} change set for {target.root_stack}")
    if body is None:
        body = template_text(target, target.template(ROOT_TEMPLATE), packaged=True)
    change_set = changeset.create(aws, target, target.root_stack, values, body, kind, "preview")
    if change_set is None:
        say("no changes: the deployed stack already matches templates/ and "
            f"params/{target.env}.json (empty change set deleted)")
        return 0
    changeset.show(change_set)
    fleet.report_ami(stack, change_set, target.env)
    if stack:  # at night: what executing this change set does to the cap (nightcap.py)
        nightcap.report(nightcap.read(aws, target.root_stack), change_set, values, False,
                        target.env)
    say("")
    say(f"change set kept for review: {change_set.id}")
    say("  apply exactly this change set: aws cloudformation execute-change-set "
        f"--change-set-name '{change_set.id}'  (then make deploy ENV={target.env} waits, "
        "verifies and smoke-tests; it finds nothing left to change)")
    say(f"  or discard it: aws cloudformation delete-change-set --change-set-name "
        f"'{change_set.id}'")
    return 0
