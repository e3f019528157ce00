"""A deploy at night (the scalable target's MaxCapacity 0, the night action of ScheduledScaling):
before the change set executes it says whether the deploy lifts the night cap or keeps it, and
afterwards what happened; --keep-night-cap puts the cap back. Every night-cap AWS call is pinned
with botocore's Stubber (an unexpected or missing call fails); the rest of the deploy (preflight,
packaging, the change set's creation, execution and the verification) is replaced by markers so
the test can see what is said before EXECUTE."""

from __future__ import annotations

import json

import pytest

from tests.cfn import REPO
from tests.tools.deploy.stubs import ACCOUNT, REGION, ROOT, aws_with, resource, stack, target
from tools import params as params_file
from tools import stackwatch
from tools.deploy import apply, changeset, nightcap, preview
from tools.deploy.target import DeployError, say

SERVICE = "llm-api-dev-gateway"
CLUSTER = "llm-api-dev"
RESOURCE_ID = f"service/{CLUSTER}/{SERVICE}"
TREE = {
    ROOT: [resource("Service", "AWS::CloudFormation::Stack", "service-stack")],
    "service-stack": [
        resource("GatewayService", "AWS::ECS::Service",
                 f"arn:aws:ecs:{REGION}:{ACCOUNT}:{RESOURCE_ID}"),
        resource("ScalableTarget", "AWS::ApplicationAutoScaling::ScalableTarget",
                 f"{RESOURCE_ID}|ecs:service:DesiredCount|ecs")],
}
VALUES = params_file.load_env("dev")
NIGHT_ACTION = f"ScaleDownSchedule {VALUES['ScaleDownSchedule']} {VALUES['ScheduleTimezone']}"
MORNING_ACTION = f"ScaleUpSchedule {VALUES['ScaleUpSchedule']} {VALUES['ScheduleTimezone']}"


def change(action: str = "Modify", replacement: str = "False",
           evaluations: tuple[str, ...] = ("Static",), details: str = "MaxCapacity"):
    return stackwatch.Change("Service", action, "ScalableTarget",
                             "AWS::ApplicationAutoScaling::ScalableTarget", replacement, details,
                             evaluations=evaluations)


SERVICE_UPDATE = stackwatch.Change("Service", "Modify", "GatewayService", "AWS::ECS::Service",
                                   "False", "TaskDefinition", evaluations=("Static",))


def expect_tree(cfn) -> None:
    for name, resources in TREE.items():
        cfn.add_response("list_stack_resources", {"StackResourceSummaries": resources},
                         {"StackName": name})


def expect_target(scaling, minimum: int, maximum: int) -> None:
    scaling.add_response("describe_scalable_targets", {"ScalableTargets": [{
        "ServiceNamespace": "ecs", "ResourceId": RESOURCE_ID,
        "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": minimum,
        "MaxCapacity": maximum, "RoleARN": "arn:role", "CreationTime": stack()["CreationTime"]}]},
        {"ServiceNamespace": "ecs", "ResourceIds": [RESOURCE_ID],
         "ScalableDimension": "ecs:service:DesiredCount"})


@pytest.fixture
def offline(monkeypatch):
    """Everything but the night-cap calls: markers instead of AWS."""
    monkeypatch.setattr(apply, "run_preflight", lambda *a: None)
    monkeypatch.setattr(apply, "check_images", lambda *a: None)
    monkeypatch.setattr(apply.fleet, "snapshot", lambda *a: None)
    monkeypatch.setattr(apply, "template_text", lambda *a: "{}")
    monkeypatch.setattr(apply.changeset, "execute", lambda *a: say("EXECUTE"))
    monkeypatch.setattr(apply, "wait_for_stack", lambda *a: None)

    class Events:
        def __init__(self, *a):
            pass

        def prime(self):
            pass

    monkeypatch.setattr(apply, "StackEvents", Events)
    state = {"changes": [], "verify": lambda: 0}

    def create(*args, **kwargs):
        return changeset.ChangeSet(id="cs-1", stack_id=stack()["StackId"], kind="UPDATE",
                                   changes=state["changes"])

    monkeypatch.setattr(apply.changeset, "create", create)

    def verify_service(*args):
        say("VERIFY")
        return state["verify"]()

    monkeypatch.setattr(apply.verify, "verify_service", verify_service)
    return state


def expect_stack_read(cfn) -> None:
    """describe_stacks before the change set (stack_ready_for_change) or after it (outputs)."""
    cfn.add_response("describe_stacks", {"Stacks": [stack()]}, {"StackName": ROOT})


def deploy(stubs, keep: bool = False) -> int:
    return apply.deploy(aws_with(stubs, "cloudformation", "application-autoscaling"), target(),
                        "abc123", {}, rehearsal=False, wait_timeout=None,
                        **({"keep_night_cap": True} if keep else {}))


@pytest.mark.parametrize("case, changes, before, after, said_before, said_after", [
    ("the ScalableTarget changes (Static): lifted until the next night action",
     [SERVICE_UPDATE, change()], 0, VALUES["ServiceMaxTasks"],
     ["this deploy LIFTS it", f"MaxCapacity ServiceMaxTasks={VALUES['ServiceMaxTasks']}) "
      f"until the next night action ({NIGHT_ACTION})", "KEEP_NIGHT_CAP=1"],
     [f"night cap lifted: MinCapacity 0, MaxCapacity {VALUES['ServiceMaxTasks']} until the "
      f"next night action ({NIGHT_ACTION})"]),
    ("replaced: a new registration", [change(replacement="True", details="ResourceId")], 0,
     VALUES["ServiceMaxTasks"], ["this deploy LIFTS it"], ["night cap lifted"]),
    ("not in the change set: kept", [SERVICE_UPDATE], 0, 0,
     ["this deploy KEEPS it", "CloudFormation updates only what changed",
      f"no task can start until {MORNING_ACTION}", "nothing verified"],
     [f"night cap still in place: MaxCapacity 0 until {MORNING_ACTION}"]),
    ("Dynamic only: decided while executing", [SERVICE_UPDATE, change(
        evaluations=("Dynamic",), details="ResourceId")], 0, 0,
     ["this deploy MAY LIFT it", "says which after the stack update"],
     ["night cap still in place"]),
])
def test_a_deploy_at_night_says_what_it_does_to_the_cap_before_it_executes(
        stubs, offline, capsys, case, changes, before, after, said_before, said_after):
    cfn, scaling = stubs("cloudformation")[1], stubs("application-autoscaling")[1]
    expect_stack_read(cfn)
    expect_tree(cfn)
    expect_target(scaling, 0, before)
    expect_stack_read(cfn)  # the outputs, after the stack update
    expect_tree(cfn)  # the night cap read again: what happened
    expect_target(scaling, 0, int(after))
    offline["changes"] = changes
    assert deploy(stubs) == 0
    out = capsys.readouterr().out
    executed = out.index("EXECUTE")
    assert "NIGHT CAP: the service's scalable target is at MinCapacity 0, MaxCapacity 0" in out
    assert out.index("NIGHT CAP") < executed, case
    for fragment in said_before:
        assert fragment in out[:executed], (case, fragment, out)
    for fragment in said_after:
        assert fragment in out[out.index("VERIFY"):], (case, fragment, out)


def test_keep_night_cap_puts_the_night_actions_capacities_back_after_the_verification(
        stubs, offline, capsys):
    cfn, scaling = stubs("cloudformation")[1], stubs("application-autoscaling")[1]
    expect_stack_read(cfn)
    expect_tree(cfn)
    expect_target(scaling, 0, 0)
    expect_stack_read(cfn)
    expect_tree(cfn)
    expect_target(scaling, 0, int(VALUES["ServiceMaxTasks"]))
    scaling.add_response("register_scalable_target", {}, {
        "ServiceNamespace": "ecs", "ResourceId": RESOURCE_ID,
        "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 0, "MaxCapacity": 0})
    offline["changes"] = [change()]
    assert deploy(stubs, keep=True) == 0
    out = capsys.readouterr().out
    assert "--keep-night-cap: after the deploy and its verification" in out[:out.index("EXECUTE")]
    assert out.index("VERIFY") < out.index("night cap put back (--keep-night-cap): "
                                           "MinCapacity 0, MaxCapacity 0")
    assert f"back to 0 tasks until {MORNING_ACTION}" in out


def test_keep_night_cap_puts_it_back_when_the_verification_fails_and_keeps_its_error(
        stubs, offline, capsys):
    cfn, scaling = stubs("cloudformation")[1], stubs("application-autoscaling")[1]
    expect_stack_read(cfn)
    expect_tree(cfn)
    expect_target(scaling, 0, 0)
    expect_stack_read(cfn)
    expect_tree(cfn)
    expect_target(scaling, 0, 1)
    scaling.add_response("register_scalable_target", {}, {
        "ServiceNamespace": "ecs", "ResourceId": RESOURCE_ID,
        "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 0, "MaxCapacity": 0})
    offline["changes"] = [change()]

    def failing():
        raise DeployError("smoke test: GET /v1/models answered 502")

    offline["verify"] = failing
    with pytest.raises(DeployError, match="answered 502"):
        deploy(stubs, keep=True)
    assert "night cap put back" in capsys.readouterr().out


def test_in_the_daytime_nothing_is_said_and_nothing_read_after(stubs, offline, capsys):
    cfn, scaling = stubs("cloudformation")[1], stubs("application-autoscaling")[1]
    expect_stack_read(cfn)
    expect_tree(cfn)
    expect_target(scaling, 0, int(VALUES["ServiceMaxTasks"]))  # no second read is stubbed
    expect_stack_read(cfn)
    offline["changes"] = [change()]
    assert deploy(stubs, keep=True) == 0
    assert "night cap" not in capsys.readouterr().out.lower()


def test_preview_at_night_says_it_too_and_that_executing_by_hand_keeps_nothing(stubs, capsys,
                                                                               monkeypatch):
    cfn, scaling = stubs("cloudformation")[1], stubs("application-autoscaling")[1]
    expect_stack_read(cfn)
    expect_tree(cfn)
    expect_target(scaling, 0, 0)
    monkeypatch.setattr(preview.changeset, "create", lambda *a, **k: changeset.ChangeSet(
        id="cs-1", stack_id=stack()["StackId"], kind="UPDATE", changes=[change()]))
    assert preview.preview(aws_with(stubs, "cloudformation", "application-autoscaling"),
                           target(), "abc123", {}, "{}") == 0
    out = capsys.readouterr().out
    assert "this deploy LIFTS it" in out
    assert "executing this change set by hand does not" in out


def test_the_messages_rest_on_the_committed_scalable_target():
    """What the report says comes from stacks/scaling.py as committed: the night action sets
    MaxCapacity 0 (what 'night' means here) and the template's MaxCapacity is ServiceMaxTasks
    (what an update registers)."""
    service = json.loads((REPO / "templates" / "service.json").read_text())
    body = service["Resources"]["ScalableTarget"]
    assert body["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
    assert body["Properties"]["MaxCapacity"] == {"Ref": "ServiceMaxTasks"}
    _, actions, _ = body["Properties"]["ScheduledActions"]["Fn::If"]
    night = next(a for a in actions if a["Schedule"] == {"Ref": "ScaleDownSchedule"})
    assert night["ScalableTargetAction"]["MaxCapacity"] == 0


@pytest.mark.parametrize("changes, verdict", [
    ([], "keeps"),
    ([SERVICE_UPDATE], "keeps"),
    ([change()], "lifts"),
    ([change(action="Add", evaluations=())], "lifts"),
    ([change(action="Remove", evaluations=())], "lifts"),
    ([change(replacement="True", evaluations=("Dynamic",))], "lifts"),
    ([change(evaluations=("Dynamic",))], "may lift"),
    ([change(evaluations=())], "may lift"),  # no detail: nothing says it changes
    ([change(evaluations=("Dynamic", "Static"))], "lifts"),
])
def test_what_a_change_set_does_to_the_cap(changes, verdict):
    found, _ = nightcap.effect(changeset.ChangeSet(id="cs", stack_id="s", kind="UPDATE",
                                                   changes=changes))
    assert found == verdict
