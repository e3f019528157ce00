"""Compose and the ECS task definition (templates/service.json) describe the same containers.

For each container: the same environment variable names (ECS Secrets included), the same
ports, the same health check (command and timings), user, read-only root, tmpfs paths, init,
stop timeout, start order and GPU. Values may differ only where ALLOWED_VALUE_DIFFERENCES says
so, with the reason. `mismatches()` is the whole comparison; the tests at the end feed it
deliberately broken copies and expect it to notice.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from app import contract
from tests.images.common import (
    GATEWAY_ENV,
    compose_environment,
    env_file,
    env_files,
    load_compose,
    resolved_compose,
    seconds,
    service_template,
    task_containers,
    without_ecs_exec,
)
from tools import contract_files

# (container, variable) -> why its local value differs from what ECS injects.
ALLOWED_VALUE_DIFFERENCES = {
    ("gateway", "GATEWAY_API_KEYS"):
        "ECS injects the Secrets Manager secret; locally a key of your own from .env",
    ("gateway", "GATEWAY_CLUSTER_NAME"):
        "the ECS cluster's name (a metric dimension); no cluster locally",
    ("gateway", "GATEWAY_SERVICE_NAME"):
        "<project>-<env>-gateway in ECS (a metric dimension); no service locally",
    ("gateway", "FORWARDED_ALLOW_IPS"):
        "ECS trusts X-Forwarded-For from the VPC CIDR (the ALB); locally no proxy is trusted",
}

# Root template parameters whose per-environment value compose sets from .env (same default).
COMPOSE_VARIABLE_FOR_PARAMETER = {"ModelName": "OLLAMA_MODEL"}


def task_values(container: dict[str, Any], parameters: dict[str, Any]) -> dict[str, str | None]:
    """Name -> the value ECS gives it with default parameters (None: only known at deploy)."""
    values: dict[str, str | None] = {}
    for item in container.get("Environment", []):
        value = item["Value"]
        if isinstance(value, str):
            values[item["Name"]] = value
        elif isinstance(value, dict) and "Ref" in value:
            default = parameters.get(value["Ref"], {}).get("Default")
            values[item["Name"]] = None if default is None else str(default)
        else:
            values[item["Name"]] = None
    for item in container.get("Secrets", []):
        declared = contract.SETTINGS_BY_ENV.get(item["Name"])
        if declared is not None and declared.source is contract.Source.SSM:
            # The config layer writes the contract default (or the root parameter's, the same)
            # into the SSM parameter that ECS injects.
            values[item["Name"]] = declared.default_text
        else:
            values[item["Name"]] = None  # a secret: known only in Secrets Manager
    return values


def task_number(task: dict[str, Any], value: Any) -> Any:
    """A literal, or Fn::FindInMap keyed by a parameter's default (the model-load budget)."""
    if isinstance(value, dict) and "Fn::FindInMap" in value:
        mapping, key, field = value["Fn::FindInMap"]
        if isinstance(key, dict):
            key = str(task["Parameters"][key["Ref"]]["Default"])
        return task["Mappings"][mapping][key][field]
    return value


def render_task_health(command: list[Any], model: str) -> list[str]:
    rendered = []
    for part in command:
        if isinstance(part, dict) and "Fn::Sub" in part:
            template = part["Fn::Sub"]
            assert set(_sub_variables(template)) <= {"ModelName"}, template
            part = template.replace("${ModelName}", model)
        rendered.append(part)
    return rendered


def _sub_variables(template: str) -> list[str]:
    return re.findall(r"\$\{([^}!]+)\}", template)


def published_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, container port) per entry of the short syntax; "" = every address."""
    result = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        result.append((host_ip, int(parts[-1].split("/")[0])))
    return result


def mismatches(task: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    """Every way the compose model differs from the task definition beyond the allowed values."""
    problems: list[str] = []
    containers = task_containers(task)
    parameters = task.get("Parameters", {})
    services = compose["services"]
    if set(containers) != set(services):
        return [f"containers {sorted(containers)} != compose services {sorted(services)}"]
    model = str(parameters["ModelName"]["Default"])
    local_model = env_file().get(COMPOSE_VARIABLE_FOR_PARAMETER["ModelName"], model)

    for name, container in containers.items():
        service = services[name]
        # Environment names (secrets included) and values.
        expected = task_values(container, parameters)
        actual = compose_environment(service)
        if set(expected) != set(actual):
            problems.append(f"{name}: environment names differ: only in task "
                            f"{sorted(set(expected) - set(actual))}, only in compose "
                            f"{sorted(set(actual) - set(expected))}")
        for variable in sorted(set(expected) & set(actual)):
            wanted = expected[variable]
            if wanted is not None and wanted == model:
                wanted = local_model  # ModelName's value, set locally through .env
            if wanted != actual[variable] and (name, variable) not in ALLOWED_VALUE_DIFFERENCES:
                problems.append(f"{name}: {variable}={actual[variable]!r} in compose, "
                                f"{expected[variable]!r} in the task, and no reason is listed")
        for (allowed_name, variable) in ALLOWED_VALUE_DIFFERENCES:
            if allowed_name == name and variable not in expected:
                problems.append(f"{name}: allowed difference {variable} is not in the task")

        # Health check: the same command (with the model filled in) and timings.
        task_check = container["HealthCheck"]
        compose_check = service["healthcheck"]
        if render_task_health(task_check["Command"], local_model) != compose_check["test"]:
            problems.append(f"{name}: health check command differs: "
                            f"{task_check['Command']} vs {compose_check['test']}")
        for ecs_key, compose_key in (("Interval", "interval"), ("Timeout", "timeout"),
                                     ("StartPeriod", "start_period"), ("Retries", "retries")):
            if seconds(compose_check.get(compose_key, -1)) != task_number(
                    task, task_check.get(ecs_key)):
                problems.append(f"{name}: health check {compose_key} differs")

        # Process: user, root filesystem, init, tmpfs, stop timeout.
        if service.get("user") != container.get("User"):
            problems.append(f"{name}: user {service.get('user')} vs {container.get('User')}")
        if bool(service.get("read_only")) != bool(container.get("ReadonlyRootFilesystem")):
            problems.append(f"{name}: read-only root filesystem differs")
        linux = container.get("LinuxParameters", {})
        if bool(service.get("init")) != bool(linux.get("InitProcessEnabled")):
            problems.append(f"{name}: init process differs")
        task_tmpfs = sorted(t["ContainerPath"] for t in without_ecs_exec(linux.get("Tmpfs", [])))
        compose_tmpfs = sorted(str(t).split(":", 1)[0] for t in service.get("tmpfs", []))
        if task_tmpfs != compose_tmpfs:
            problems.append(f"{name}: tmpfs {compose_tmpfs} vs {task_tmpfs}")
        if seconds(service.get("stop_grace_period", "10s")) != container.get("StopTimeout"):
            problems.append(f"{name}: stop timeout differs")

        # Start order.
        task_deps = {d["ContainerName"]: d["Condition"] for d in container.get("DependsOn", [])}
        compose_deps = {k: v["condition"] for k, v in (service.get("depends_on") or {}).items()}
        conditions = {"HEALTHY": "service_healthy", "START": "service_started",
                      "COMPLETE": "service_completed_successfully"}
        if {k: conditions[v] for k, v in task_deps.items()} != compose_deps:
            problems.append(f"{name}: depends_on {compose_deps} vs {task_deps}")

        # GPU.
        task_gpus = sum(int(r["Value"]) for r in container.get("ResourceRequirements", [])
                        if r["Type"] == "GPU")
        devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations")
                   or {}).get("devices") or []
        compose_gpus = sum(int(d.get("count", 0)) for d in devices if "gpu" in d["capabilities"])
        if task_gpus != compose_gpus:
            problems.append(f"{name}: GPUs {compose_gpus} vs {task_gpus}")

    # Ports: the task's containers share one namespace, and so do compose's (network_mode);
    # compose publishes the namespace's ports on its owner, on loopback only.
    task_ports = sorted(p["ContainerPort"] for c in containers.values()
                        for p in c.get("PortMappings", []))
    compose_ports = []
    for name, service in services.items():
        for host_ip, port in published_ports(service):
            compose_ports.append(port)
            if host_ip != "127.0.0.1":
                problems.append(f"{name}: port {port} published on {host_ip or 'every address'}")
    if sorted(compose_ports) != task_ports:
        problems.append(f"published ports {sorted(compose_ports)} vs task ports {task_ports}")
    owners = {s.get("network_mode", "").removeprefix("service:") for s in services.values()}
    owners.discard("")
    if len(owners) != 1 or any("network_mode" not in s for n, s in services.items()
                               if n not in owners):
        problems.append("compose containers do not share one network namespace")
    return problems


TASK = service_template()
COMPOSE = resolved_compose()


def test_compose_and_the_task_definition_agree():
    assert mismatches(TASK, COMPOSE) == []


def test_every_allowed_difference_is_a_real_difference_with_a_reason():
    containers = task_containers(TASK)
    for (name, variable), reason in ALLOWED_VALUE_DIFFERENCES.items():
        assert len(reason) > 20, (name, variable)
        expected = task_values(containers[name], TASK["Parameters"])[variable]
        actual = compose_environment(COMPOSE["services"][name])[variable]
        assert expected != actual, f"{name}/{variable} does not differ: drop it from the list"


def test_the_contract_settings_are_exactly_the_gateway_environment():
    names = set(compose_environment(COMPOSE["services"]["gateway"]))
    declared = {s.env for s in contract.SETTINGS
                if s.source in (contract.Source.SECRET, contract.Source.SSM, contract.Source.TASK)}
    assert declared <= names
    # uvicorn's, not the gateway's: the proxy list and the timeouts of the budget.
    assert names - declared == {"FORWARDED_ALLOW_IPS", *contract.uvicorn_environment()}


def test_compose_reads_the_generated_env_file_and_sets_only_local_values_itself():
    gateway = load_compose()["services"]["gateway"]
    assert env_files(gateway) == [GATEWAY_ENV]
    assert GATEWAY_ENV.read_text() == contract_files.env_file_text(), (
        "gateway.env is stale: run `make generate`")
    # What compose writes itself is what differs locally on purpose (or comes from .env).
    assert set(gateway["environment"]) == {"FORWARDED_ALLOW_IPS", "GATEWAY_API_KEYS",
                                           "GATEWAY_MODELS"}
    values = env_file(GATEWAY_ENV)
    for name, value in contract.uvicorn_environment().items():
        assert values[name] == value, name


def test_a_stale_env_file_is_a_parity_failure(tmp_path):
    # The env file of a budget that has since changed: the task follows the contract, the file
    # does not, and the comparison names the variable.
    stale = tmp_path / "gateway.env"
    stale.write_text(GATEWAY_ENV.read_text().replace(
        f"UVICORN_TIMEOUT_KEEP_ALIVE={contract.TIMEOUTS.keep_alive_seconds}",
        "UVICORN_TIMEOUT_KEEP_ALIVE=65"))
    assert stale.read_text() != GATEWAY_ENV.read_text()
    problems = mismatches(TASK, _mutate(COMPOSE, "services/gateway/env_file", [str(stale)]))
    assert any("UVICORN_TIMEOUT_KEEP_ALIVE" in p for p in problems), problems


def _mutate(model: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(model)
    *parents, last = path.split("/")
    node = mutated
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return mutated


_DELETE = object()
TASK_GATEWAY = "Resources/TaskDefinition/Properties/ContainerDefinitions/1"
TASK_OLLAMA = "Resources/TaskDefinition/Properties/ContainerDefinitions/0"

# case -> (path in the copy, new value or _DELETE, what the mismatch report must mention)
COMPOSE_MUTATIONS = {
    "renamed env var": ("services/gateway/environment/GATEWAY_LOG_LEVL", "info", "GATEWAY_LOG_LEVL"),
    "dropped secret": ("services/gateway/environment/GATEWAY_API_KEYS", _DELETE, "GATEWAY_API_KEYS"),
    "changed value": ("services/ollama/environment/OLLAMA_KEEP_ALIVE", "5m", "OLLAMA_KEEP_ALIVE"),
    "ollama on every address": ("services/ollama/environment/OLLAMA_HOST", "0.0.0.0:11434",
                                "OLLAMA_HOST"),
    "published 11434": ("services/ollama/ports",
                        ["127.0.0.1:8000:8000", "127.0.0.1:11434:11434"], "11434"),
    "published on all addresses": ("services/ollama/ports", ["8000:8000"], "every address"),
    "other health command": ("services/ollama/healthcheck/test", ["CMD-SHELL", "ollama list"],
                             "health check command"),
    "other health interval": ("services/gateway/healthcheck/interval", "60s", "interval"),
    "root user": ("services/ollama/user", "0:0", "user"),
    "writable root": ("services/gateway/read_only", False, "read-only"),
    "missing tmpfs": ("services/ollama/tmpfs", ["/tmp:size=512m"], "tmpfs"),
    "no GPU": ("services/ollama/deploy", _DELETE, "GPUs"),
    "started too early": ("services/gateway/depends_on/ollama/condition", "service_started",
                          "depends_on"),
    "own network": ("services/gateway/network_mode", _DELETE, "network namespace"),
    "no env file": ("services/gateway/env_file", _DELETE, "GATEWAY_MAX_CONCURRENCY"),
    "keep-alive overridden": ("services/gateway/environment/UVICORN_TIMEOUT_KEEP_ALIVE", "5",
                              "UVICORN_TIMEOUT_KEEP_ALIVE"),
}

TASK_MUTATIONS = {
    "new task variable": (f"{TASK_GATEWAY}/Environment/0/Name", "OLLAMA_URL", "OLLAMA_URL"),
    "task health command": (f"{TASK_GATEWAY}/HealthCheck/Command/3", "print('hi')",
                            "health check command"),
    "task port": (f"{TASK_GATEWAY}/PortMappings/0/ContainerPort", 8080, "8080"),
    "task user": (f"{TASK_OLLAMA}/User", "1000:1000", "user"),
    "task stop timeout": (f"{TASK_OLLAMA}/StopTimeout", 60, "stop timeout"),
    "task keep-alive": (f"{TASK_GATEWAY}/Environment/5/Value", "65", "UVICORN_TIMEOUT_KEEP_ALIVE"),
}


@pytest.mark.parametrize("case", sorted(COMPOSE_MUTATIONS))
def test_a_deliberate_compose_mismatch_fails(case):
    path, value, fragment = COMPOSE_MUTATIONS[case]
    problems = mismatches(TASK, _mutate(COMPOSE, path, value))
    assert problems and fragment in " ".join(problems), (case, problems)


@pytest.mark.parametrize("case", sorted(TASK_MUTATIONS))
def test_a_deliberate_task_mismatch_fails(case):
    path, value, fragment = TASK_MUTATIONS[case]
    problems = mismatches(_mutate(TASK, path, value), COMPOSE)
    assert problems and fragment in " ".join(problems), (case, problems)


def test_the_mutation_paths_point_at_what_they_claim():
    containers = TASK["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert containers[1]["Name"] == "gateway" and containers[0]["Name"] == "ollama"
    assert containers[1]["Environment"][5]["Name"] == "UVICORN_TIMEOUT_KEEP_ALIVE"
