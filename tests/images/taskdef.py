"""A container definition of the task, as ECS hands it to Docker: the create-container request.

ECS turns each container definition into a Docker create-container call; the API reference
names, for every parameter, the Docker field it maps to
(https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html,
API_LinuxParameters.html, API_HealthCheck.html, API_Ulimit.html, API_KernelCapabilities.html):
user -> Config.User, readonlyRootFilesystem -> HostConfig.ReadonlyRootfs, environment ->
Config.Env, healthCheck -> Config.Healthcheck, memory / memoryReservation -> HostConfig.Memory /
MemoryReservation (MiB), ulimits -> HostConfig.Ulimits, linuxParameters.capabilities ->
HostConfig.CapAdd / CapDrop, initProcessEnabled -> HostConfig.Init, tmpfs -> HostConfig.Tmpfs
(its size in MiB joins the mount options: aws/amazon-ecs-agent@8dfceca6 proposals/shmsize-tmpfs.md).
Secrets reach the container as environment variables
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/specifying-sensitive-data.html).
stopTimeout is not a create-time field: the agent passes it to StopContainer
(aws/amazon-ecs-agent@8dfceca6 agent/engine/docker_task_engine.go, stopContainer ->
container.GetStopTimeout()). In an Exec-enabled task the agent adds its bind mounts
(tests/stacks/ecs_agent.py). The request goes to the Engine API, as the agent sends it.

Every key of the container definition is either mapped here or listed in NOT_ENGINE_SETTINGS
with the reason; an unknown key fails, so a new setting cannot go untested by omission.
"""

from __future__ import annotations

import copy
import secrets
import string
from pathlib import Path
from typing import Any

from tests.images import engine
from tests.stacks.ecs_agent import EXEC_DEPS_DIR_PREFIX, EXEC_DEPS_FILES, EXEC_LOG_DIR

MIB = 1024 * 1024
NANOSECONDS = 1_000_000_000

# Container definition keys that are not settings of the container the engine creates.
NOT_ENGINE_SETTINGS = {
    "Name": "the container's name in the task (used as the container name's suffix)",
    "Image": "the ECR URI; the image built here from the same Dockerfile runs instead",
    "Essential": "ECS stops the task when an essential container stops; no Docker field",
    "DependsOn": "ECS orders container starts; the double is started (and answers) first",
    "PortMappings": "awsvpc: the container port is on the task's namespace, no host mapping",
    "LogConfiguration": "the awslogs driver needs CloudWatch; the engine's json-file stands in",
    "StopTimeout": "passed to StopContainer by the agent (the tests stop with it)",
    "Secrets": "injected as environment variables with the values ECS would fetch",
}
_MAPPED = {"User", "ReadonlyRootFilesystem", "Environment", "HealthCheck", "Memory",
           "MemoryReservation", "Ulimits", "LinuxParameters"}
_LINUX_MAPPED = {"InitProcessEnabled", "Tmpfs", "Capabilities", "SharedMemorySize"}


def tmpfs_options(entry: dict[str, Any]) -> str:
    """A task definition Tmpfs entry as Docker's tmpfs option string (`--tmpfs path:<this>`)."""
    return ",".join([*entry.get("MountOptions", []), f"size={entry['Size']}m"])


def tmpfs_args(entries: list[dict[str, Any]]) -> list[str]:
    return [arg for e in entries for arg in ("--tmpfs", f"{e['ContainerPath']}:{tmpfs_options(e)}")]


def generated_secret(length: int = 48) -> str:
    """A GENERATED TEST VALUE standing in for the Secrets Manager secret (the config layer's
    GenerateSecretString: letters and digits, no punctuation)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def secret_values(container: dict[str, Any], templates: dict[str, dict]) -> dict[str, str]:
    """What ECS would inject for each Secrets entry: an SSM parameter's value from the rendered
    templates (the config layer writes it), a generated test value for a Secrets Manager ARN."""
    parameters = {r["Properties"]["Name"]: str(r["Properties"]["Value"])
                  for t in templates.values() for r in t.get("Resources", {}).values()
                  if r["Type"] == "AWS::SSM::Parameter"}
    values = {}
    for entry in container.get("Secrets", []):
        source = entry["ValueFrom"]
        if ":secretsmanager:" in source:
            values[entry["Name"]] = generated_secret()
        elif ":parameter/" in source:
            name = "/" + source.split(":parameter/", 1)[1]
            if name not in parameters:
                raise AssertionError(f"{entry['Name']}: no AWS::SSM::Parameter named {name} in "
                                     "the rendered templates; ECS could not fetch it")
            values[entry["Name"]] = parameters[name]
        else:
            raise AssertionError(f"{entry['Name']}: ValueFrom {source!r} is neither an SSM "
                                 "parameter nor a Secrets Manager ARN")
    return values


def exec_binds(host_dir: Path, task_id: str = "task", container: str = "gateway") -> list[str]:
    """The binds the ECS agent adds to every container of an Exec-enabled task (host side:
    empty stand-in files under host_dir; the agent's are the SSM agent's binaries and config)."""
    deps = f"{EXEC_DEPS_DIR_PREFIX}{secrets.token_hex(8)}"
    binds = []
    for relative in EXEC_DEPS_FILES:
        source = host_dir / "deps" / relative
        source.parent.mkdir(parents=True, exist_ok=True)
        source.touch()
        binds.append(f"{source}:{deps}/{relative}:ro")
    log_dir = host_dir / "log" / task_id / container
    log_dir.mkdir(parents=True, exist_ok=True)
    binds.append(f"{log_dir}:{EXEC_LOG_DIR}")
    return binds


def create_request(container: dict[str, Any], image: str, secret_env: dict[str, str],
                   network_container: str, binds: list[str]) -> dict[str, Any]:
    """The Engine API create-container body for this container definition."""
    unknown = set(container) - _MAPPED - set(NOT_ENGINE_SETTINGS)
    linux = container.get("LinuxParameters", {})
    unknown |= {f"LinuxParameters.{k}" for k in set(linux) - _LINUX_MAPPED}
    if unknown:
        raise AssertionError(f"no engine mapping for {sorted(unknown)}: add it to "
                             "tests/images/taskdef.py (or NOT_ENGINE_SETTINGS, with the reason)")
    env = [f"{e['Name']}={e['Value']}" for e in container.get("Environment", [])]
    env += [f"{name}={value}" for name, value in secret_env.items()]
    host: dict[str, Any] = {
        "NetworkMode": f"container:{network_container}",
        "ReadonlyRootfs": bool(container.get("ReadonlyRootFilesystem", False)),
        "Binds": binds,
        "Init": bool(linux.get("InitProcessEnabled", False)),
        "Tmpfs": {e["ContainerPath"]: tmpfs_options(e) for e in linux.get("Tmpfs", [])},
        "CapAdd": linux.get("Capabilities", {}).get("Add"),
        "CapDrop": linux.get("Capabilities", {}).get("Drop"),
        "Ulimits": [{"Name": u["Name"], "Soft": u["SoftLimit"], "Hard": u["HardLimit"]}
                    for u in container.get("Ulimits", [])],
    }
    if "SharedMemorySize" in linux:
        host["ShmSize"] = linux["SharedMemorySize"] * MIB
    if "Memory" in container:
        host["Memory"] = container["Memory"] * MIB
    if "MemoryReservation" in container:
        host["MemoryReservation"] = container["MemoryReservation"] * MIB
    body: dict[str, Any] = {"Image": image, "Env": env, "HostConfig": host}
    if "User" in container:
        body["User"] = container["User"]
    if "HealthCheck" in container:
        check = container["HealthCheck"]
        body["Healthcheck"] = {  # ECS defaults: interval 30, timeout 5, retries 3, start 0
            "Test": check["Command"],
            "Interval": check.get("Interval", 30) * NANOSECONDS,
            "Timeout": check.get("Timeout", 5) * NANOSECONDS,
            "Retries": check.get("Retries", 3),
            "StartPeriod": check.get("StartPeriod", 0) * NANOSECONDS,
        }
    return body


def create(name: str, body: dict[str, Any]) -> str:
    """POST /containers/create; a refusal fails with the engine's message."""
    status, answer = engine.api("POST", f"/containers/create?name={name}", body)
    if status != 201:
        message = answer.get("message") if isinstance(answer, dict) else answer
        raise engine.EngineCommandError(
            f"the engine refused the task definition's container settings ({status}): {message}")
    return answer["Id"]


def start(container_id: str) -> None:
    status, answer = engine.api("POST", f"/containers/{container_id}/start")
    if status not in (204, 304):
        message = answer.get("message") if isinstance(answer, dict) else answer
        raise engine.EngineCommandError(f"the engine could not start the container ({status}): "
                                        f"{message}")


def with_tmpfs(container: dict[str, Any], path: str, size: int = 64) -> dict[str, Any]:
    """A copy of the container definition with one more tmpfs (a variant, never the template)."""
    variant = copy.deepcopy(container)
    variant.setdefault("LinuxParameters", {}).setdefault("Tmpfs", []).append(
        {"ContainerPath": path, "MountOptions": ["nosuid", "nodev"], "Size": size})
    return variant
