"""Service layer: the sidecar task, the execution role, the service and its scaling."""

from __future__ import annotations

import json
import re

import pytest

from app.contract import (
    GATEWAY_PORT,
    OLLAMA_PORT,
    SETTINGS,
    TIMEOUTS,
    Source,
)
from stacks import names
from tests.cfn import generated, props, resources, walk
from tests.stacks import ecs_agent

SECRET_LOOKING = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)


def service_template():
    return generated()["service.json"]


def containers() -> dict[str, dict]:
    task = props(service_template()["Resources"]["TaskDefinition"])
    return {c["Name"]: c for c in task["ContainerDefinitions"]}


def env(container: str) -> dict:
    return {e["Name"]: e["Value"] for e in containers()[container].get("Environment", [])}


def statements(role: str) -> list[dict]:
    policies = props(service_template()["Resources"][role]).get("Policies", [])
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


# -- the task ----------------------------------------------------------------------------


def test_task_is_awsvpc_on_ec2_with_separate_roles():
    task = props(service_template()["Resources"]["TaskDefinition"])
    assert task["NetworkMode"] == "awsvpc"
    assert task["RequiresCompatibilities"] == ["EC2"]
    assert task["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert set(containers()) == {"gateway", "ollama"}


def test_ollama_has_one_gpu_no_port_mapping_and_binds_to_loopback():
    ollama = containers()["ollama"]
    assert ollama["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    assert "PortMappings" not in ollama
    assert env("ollama")["OLLAMA_HOST"] == f"127.0.0.1:{OLLAMA_PORT}"
    assert env("ollama")["OLLAMA_KEEP_ALIVE"] == "-1"
    assert env("ollama")["OLLAMA_NUM_PARALLEL"] == {"Ref": "OllamaNumParallel"}
    assert ollama["Memory"] == {"Ref": "OllamaMemoryMiB"}
    assert ollama["MemoryReservation"] == {"Ref": "OllamaMemoryReservationMiB"}


def test_ollama_health_check_proves_the_model_is_loaded_without_curl():
    check = containers()["ollama"]["HealthCheck"]
    assert check["Command"][0] == "CMD-SHELL"
    command = check["Command"][1]["Fn::Sub"]
    assert command.startswith("ollama ps") and "${ModelName}" in command
    assert "curl" not in command and "wget" not in command
    assert check["StartPeriod"] == {"Fn::FindInMap": ["ModelLoadBudget", {"Ref": "ModelLoadSeconds"},
                                                      "OllamaCheckStartPeriod"]}


def test_gateway_waits_for_a_healthy_ollama_and_exposes_only_its_port():
    gateway = containers()["gateway"]
    assert gateway["DependsOn"] == [{"ContainerName": "ollama", "Condition": "HEALTHY"}]
    assert gateway["PortMappings"] == [{"ContainerPort": GATEWAY_PORT, "Protocol": "tcp"}]


def test_gateway_health_check_uses_python_not_curl():
    command = containers()["gateway"]["HealthCheck"]["Command"]
    assert command[:2] == ["CMD", "python"]
    assert "/healthz" in command[-1] and "curl" not in " ".join(command)


def test_gateway_is_read_only_non_root_with_init_and_the_budget_stop_timeout():
    gateway = containers()["gateway"]
    assert gateway["ReadonlyRootFilesystem"] is True
    assert gateway["User"] not in ("root", "0", "0:0") and not gateway["User"].startswith("0:")
    assert gateway["LinuxParameters"]["InitProcessEnabled"] is True
    assert gateway["StopTimeout"] == TIMEOUTS.container_stop_timeout_seconds
    tmpfs = gateway["LinuxParameters"]["Tmpfs"]["Fn::If"]
    assert tmpfs[0] == "ExecOn"
    assert {m["ContainerPath"] for m in tmpfs[2]} == {"/tmp"}
    assert {m["ContainerPath"] for m in tmpfs[1]} >= {"/tmp", "/var/lib/amazon/ssm"}


def container_paths(container: dict) -> set[str]:
    """Every ContainerPath a container mounts (tmpfs and mount points, both sides of Fn::If)."""
    return {value for path, value in walk(container)
            if path and path[-1] in ("ContainerPath",) and isinstance(value, str)}


@pytest.mark.parametrize("container", ["gateway", "ollama"])
def test_no_mount_or_tmpfs_where_the_ecs_agent_binds_for_exec(container):
    # The agent bind-mounts its exec log dir and binaries into Exec-enabled containers; Docker
    # refuses a tmpfs at a bind's destination (tests/stacks/ecs_agent.py has the sources).
    paths = container_paths(containers()[container])
    assert "/tmp" in paths, "the walk found the tmpfs mounts"
    colliding = sorted(p for p in paths if ecs_agent.collides_with_exec_binds(p))
    assert not colliding, (
        f"{container}: {colliding} is bind-mounted by the ECS agent when ECS Exec is on "
        f"(amazon-ecs-agent@{ecs_agent.ECS_AGENT_COMMIT[:8]} execcmd/manager_init_task_linux.go); "
        f"Docker refuses it: {ecs_agent.DUPLICATE_MOUNT_ERROR}")


@pytest.mark.parametrize("container", ["gateway", "ollama"])
def test_ssm_agent_state_dir_is_writable_only_when_exec_is_on(container):
    # amazon-ssm-agent@1c217c89 agent/appconfig/constants_unix.go: AgentData
    # /var/lib/amazon/ssm/ holds the session files (SessionFilesPath) the exec session writes.
    on, off = containers()[container]["LinuxParameters"]["Tmpfs"]["Fn::If"][1:]
    assert "/var/lib/amazon/ssm" in {m["ContainerPath"] for m in on}
    assert "/var/lib/amazon/ssm" not in {m["ContainerPath"] for m in off}
    assert "/managed-agents" not in {m["ContainerPath"] for m in on}, (
        "/managed-agents is the ECS agent's own path, never a task container's")


def test_ollama_is_read_only_and_non_root_too():
    ollama = containers()["ollama"]
    assert ollama["ReadonlyRootFilesystem"] is True
    assert ollama["User"] == containers()["gateway"]["User"]
    assert env("ollama")["HOME"] in {m["ContainerPath"]
                                     for m in ollama["LinuxParameters"]["Tmpfs"]["Fn::If"][2]}


def test_settings_are_injected_as_the_contract_declares():
    gateway = containers()["gateway"]
    secrets = {s["Name"]: s["ValueFrom"] for s in gateway["Secrets"]}
    environment = env("gateway")
    for setting in SETTINGS:
        if setting.source is Source.SECRET:
            assert secrets[setting.env] == {"Ref": "ApiKeySecretArn"}
        elif setting.source is Source.SSM:
            assert secrets[setting.env] == {"Ref": names.setting_parameter_output(setting.env)}
        elif setting.source is Source.TASK:
            assert setting.env in environment
        else:
            assert setting.env not in environment and setting.env not in secrets
    assert environment["FORWARDED_ALLOW_IPS"] == {"Ref": "VpcCidr"}
    assert not set(secrets) & set(environment)


@pytest.mark.parametrize("container", ["gateway", "ollama"])
def test_no_secret_looking_names_in_environment(container):
    for name in env(container):
        assert not SECRET_LOOKING.search(name), f"{container}: {name} belongs in Secrets"


@pytest.mark.parametrize("container", ["gateway", "ollama"])
def test_both_containers_log_to_their_own_group(container):
    config = containers()[container]["LogConfiguration"]
    assert config["LogDriver"] == "awslogs"
    options = config["Options"]
    assert options["awslogs-group"] == {"Ref": f"{container.capitalize()}LogGroup"}
    assert options["awslogs-region"] == {"Ref": "AWS::Region"}
    assert options["awslogs-stream-prefix"] == container


def test_log_groups_are_encrypted_retained_and_sized_by_parameter():
    for group in resources(service_template(), "AWS::Logs::LogGroup").values():
        assert props(group)["KmsKeyId"] == {"Ref": "KmsKeyArn"}
        assert props(group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert group["DeletionPolicy"] == "Retain"
    assert service_template()["Parameters"]["LogRetentionDays"]["Default"] == 365


def test_task_definition_is_valid_json_with_no_unresolved_python_objects():
    text = json.dumps(service_template())
    assert "object at 0x" not in text


# -- IAM ---------------------------------------------------------------------------------


def test_execution_role_has_exactly_the_listed_actions_and_resources():
    found = {s["Sid"]: (sorted(s["Action"]), s["Resource"]) for s in statements("ExecutionRole")}
    assert found == {
        "EcrLogin": (["ecr:GetAuthorizationToken"], ["*"]),
        "PullTheTwoImages": (
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [{"Ref": "GatewayRepositoryArn"}, {"Ref": "OllamaRepositoryArn"}]),
        "WriteContainerLogs": (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [{"Fn::GetAtt": ["GatewayLogGroup", "Arn"]}, {"Fn::GetAtt": ["OllamaLogGroup", "Arn"]}]),
        "ReadGatewaySettings": (
            ["ssm:GetParameters"],
            [{"Ref": names.setting_parameter_output(s.env)}
             for s in sorted(SETTINGS, key=lambda s: s.env) if s.source is Source.SSM]),
        "ReadApiKeys": (["secretsmanager:GetSecretValue"], [{"Ref": "ApiKeySecretArn"}]),
        "DecryptApiKeysThroughSecretsManager": (["kms:Decrypt"], [{"Ref": "KmsKeyArn"}]),
    }


def test_the_only_wildcard_resource_is_the_ecr_token():
    for statement in statements("ExecutionRole"):
        if "*" in statement["Resource"]:
            assert statement["Action"] == ["ecr:GetAuthorizationToken"]
        assert all("*" not in a for a in statement["Action"])


def test_task_role_is_empty_unless_ecs_exec_is_on():
    role = props(service_template()["Resources"]["TaskRole"])
    assert role["Policies"]["Fn::If"][0] == "ExecOn"
    assert role["Policies"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    exec_actions = role["Policies"]["Fn::If"][1][0]["PolicyDocument"]["Statement"][0]["Action"]
    assert all(a.startswith("ssmmessages:") for a in exec_actions)


@pytest.mark.parametrize("role", ["ExecutionRole", "TaskRole"])
def test_ecs_task_roles_trust_only_this_accounts_tasks(role):
    (statement,) = props(service_template()["Resources"][role])["AssumeRolePolicyDocument"][
        "Statement"]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}


def test_execution_and_task_roles_differ():
    task = props(service_template()["Resources"]["TaskDefinition"])
    assert task["ExecutionRoleArn"] != task["TaskRoleArn"]


# -- the service -------------------------------------------------------------------------


def service_props() -> dict:
    return props(service_template()["Resources"]["Service"])


def test_service_uses_the_capacity_provider_and_no_launch_type():
    service = service_props()
    assert "LaunchType" not in service
    assert service["CapacityProviderStrategy"] == [
        {"CapacityProvider": {"Ref": "CapacityProviderName"}, "Weight": 1, "Base": 0}]
    assert "DesiredCount" not in service


def test_service_rolls_back_on_failure_and_has_no_public_ip():
    service = service_props()
    deployment = service["DeploymentConfiguration"]
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert deployment["MaximumPercent"] == {"Ref": "DeploymentMaximumPercent"}
    assert deployment["MinimumHealthyPercent"] == {"Ref": "DeploymentMinimumHealthyPercent"}
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["Subnets"] == {"Ref": "PrivateSubnetIds"}


def test_service_registers_gateway_port_in_the_target_group_after_the_listener():
    service = service_props()
    assert service["LoadBalancers"] == [{"ContainerName": "gateway", "ContainerPort": GATEWAY_PORT,
                                         "TargetGroupArn": {"Ref": "TargetGroupArn"}}]
    assert service["HealthCheckGracePeriodSeconds"] == {"Ref": "HealthCheckGracePeriodSeconds"}
    root = generated()["root.json"]["Resources"]["Service"]["Properties"]["Parameters"]
    assert root["ListenerArn"] == {"Fn::GetAtt": ["LoadBalancer", "Outputs.ListenerArn"]}


def test_service_spreads_across_azs_tags_and_exec_behind_parameter():
    service = service_props()
    assert service["PlacementStrategies"][0] == {"Type": "spread",
                                                 "Field": "attribute:ecs.availability-zone"}
    assert service["EnableECSManagedTags"] is True and service["PropagateTags"] == "SERVICE"
    assert service["EnableExecuteCommand"] == {"Fn::If": ["ExecOn", True, False]}


def test_image_uris_are_built_by_root_from_prefix_and_tag():
    root = generated()["root.json"]
    parameters = root["Resources"]["Service"]["Properties"]["Parameters"]
    assert parameters["GatewayImageUri"]["Fn::Sub"].endswith("${RepositoryPrefix}/gateway:${ImageTag}")
    assert parameters["OllamaImageUri"]["Fn::Sub"].endswith("${RepositoryPrefix}/ollama:${ImageTag}")
    assert parameters["GatewayRepositoryArn"]["Fn::Sub"].endswith(
        ":repository/${RepositoryPrefix}/gateway")
    assert "Default" not in root["Parameters"]["ImageTag"]
    assert root["Parameters"]["RepositoryPrefix"] == generated()["registry.json"]["Parameters"][
        "RepositoryPrefix"] | {"Description": root["Parameters"]["RepositoryPrefix"]["Description"]}


# -- the model-load budget (stacks/model_load.py) -----------------------------------------


def resolve(value, template: dict, parameters: dict[str, str]):
    """A container number as deployed: a literal, or Fn::FindInMap keyed by a parameter."""
    if isinstance(value, dict) and "Fn::FindInMap" in value:
        mapping, key, field = value["Fn::FindInMap"]
        if isinstance(key, dict):
            name = key["Ref"]
            key = parameters.get(name, str(template["Parameters"][name].get("Default")))
        return template["Mappings"][mapping][key][field]
    return value


def env_parameters() -> list[tuple[str, dict[str, str]]]:
    from tools import params
    return [(env, params.load_env(env)) for env in params.environments()]


@pytest.mark.parametrize(("env", "values"), env_parameters(), ids=lambda v: v if isinstance(v, str) else "")
def test_ollama_check_waits_out_the_load_budget_and_bounds_the_gateways_wait(env, values):
    template = service_template()
    ollama = containers()["ollama"]
    number = lambda v: int(resolve(v, template, values))  # noqa: E731
    check = ollama["HealthCheck"]
    start, interval, retries, timeout = (number(check[k]) for k in
                                         ("StartPeriod", "Interval", "Retries", "Timeout"))
    load = int(values.get("ModelLoadSeconds", template["Parameters"].get(
        "ModelLoadSeconds", {}).get("Default", 0)))
    # ECS bounds (API_HealthCheck): start period 0-300, interval 5-300, retries 1-10.
    assert 0 <= start <= 300 and 5 <= interval <= 300 and 1 <= retries <= 10 and 2 <= timeout <= 60
    gives_up = start + interval * retries
    assert gives_up >= load + interval, (
        f"{env}: Ollama turns UNHEALTHY after {gives_up} s, the model may load for {load} s")
    # The agent ends a dependsOn HEALTHY wait only by the dependency's own startTimeout
    # (aws/amazon-ecs-agent@8dfceca6 agent/engine/dependencygraph/graph.go,
    # hasDependencyTimedOut); without one the gateway could wait forever.
    dependencies = {d["ContainerName"] for d in containers()["gateway"]["DependsOn"]}
    assert dependencies == {"ollama"}
    assert "StartTimeout" in ollama, "no StartTimeout on the dependency: the wait never ends"
    assert number(ollama["StartTimeout"]) >= gives_up, "the wait ends before the check's verdict"


def test_every_load_tier_is_mapped_from_the_one_rule():
    from stacks import model_load
    template = service_template()
    tiers = template["Parameters"]["ModelLoadSeconds"]["AllowedValues"]
    assert sorted(template["Mappings"]["ModelLoadBudget"], key=int) == [str(t) for t in tiers]
    for tier in tiers:
        row = template["Mappings"]["ModelLoadBudget"][str(tier)]
        check = model_load.container_check(int(tier))
        assert row["OllamaCheckInterval"] == check.interval
        assert row["OllamaCheckStartPeriod"] + row["OllamaCheckInterval"] * row[
            "OllamaCheckRetries"] >= int(tier) + row["OllamaCheckInterval"]


def test_no_alarm_topic_or_dashboard_here_only_scaling():
    # Monitoring is its own layer (tests/stacks/test_monitoring.py); the only alarms here drive
    # scaling policies (scale-to-zero, stacks/scaling.py) and notify nobody.
    template = service_template()
    kinds = {r["Type"] for r in resources(template).values()}
    assert not kinds & {"AWS::SNS::Topic", "AWS::CloudWatch::Dashboard", "AWS::Events::Rule"}
    # ...and, for the wake, a step policy on the GPU group.
    policies = set(resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy"))
    policies |= set(resources(template, "AWS::AutoScaling::ScalingPolicy"))
    for alarm in resources(template, "AWS::CloudWatch::Alarm").values():
        actions = [action["Ref"] for action in props(alarm)["AlarmActions"]]
        assert set(actions) <= policies and "OKActions" not in props(alarm)
