"""The Ollama image on the private engine: built from ollama/Dockerfile unchanged on the STAND-IN
base (tests/images/standin_ollama: NOT OLLAMA), run as an environment's task definition says, and
reached from a network namespace made here.

- `ollama_image(model)`: ollama/Dockerfile, unchanged, built on the stand-in.
- `deployed_container(env, name)`: a container definition of templates/service.json as
  params/<env>.json deploys it (tools/render.py: every Ref, Fn::If and Fn::FindInMap resolved).
- `start_task_container(...)`: the Engine API create request ECS would send for it
  (tests/images/taskdef.py), with the agent's ECS Exec binds where the environment enables Exec.
- `LinkedNamespace`: a network namespace of our own, joined to a container's namespace by a veth
  pair; it plays "outside the task's namespace" (the VPC side of the task's ENI) for a client.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.images import engine, standin_ollama, taskdef
from tests.images.common import OLLAMA_DOCKERFILE

NANOSECONDS = 1_000_000_000
# The task's check interval is 30 s or more (stacks/model_load.py); Docker runs the first probe
# one interval after start (moby/moby@5d6db842, v20.10.24, daemon/health.go monitor), so the
# engine tests probe every second. Command, timeout, retries and start period stay the task's.
TEST_CHECK_INTERVAL_SECONDS = 1


@functools.cache
def ollama_image(model: str) -> str:
    """ollama/Dockerfile, unchanged, with MODEL=model, on the stand-in base (BuildKit's cache
    makes a rebuild of unchanged inputs take about a second)."""
    standin_ollama.base()
    tag = f"llm-api-test/ollama:{re.sub(r'[^a-z0-9_.-]', '-', model)}"
    return engine.build_image(tag, OLLAMA_DOCKERFILE.parent, build_args={"MODEL": model})


@functools.cache
def rendered_service(env: str) -> dict[str, Any]:
    from tools import render

    return render.render_environment(env).templates["service.json"]


def deployed_container(env: str, name: str) -> dict[str, Any]:
    definitions = rendered_service(env)["Resources"]["TaskDefinition"]["Properties"][
        "ContainerDefinitions"]
    return next(c for c in definitions if c["Name"] == name)


def exec_enabled(env: str) -> bool:
    return rendered_service(env)["Resources"]["Service"]["Properties"].get(
        "EnableExecuteCommand") is True


# Settings of the ollama container that the engine cannot apply here (besides taskdef.py's).
NOT_APPLIED_HERE = {
    "ResourceRequirements": "no GPU on this machine: the stand-in needs none",
    "StartTimeout": "the agent's wait for the container's dependency condition, not Docker's",
}


def start_task_container(name: str, container: dict[str, Any], image: str, host_dir: Path,
                         ecs_exec: bool, extra_env: dict[str, str] | None = None) -> str:
    """Create and start the container as ECS would (Engine API), owning a namespace of its own
    (--network none: the engine has no bridge; the task's awsvpc namespace has its ENI)."""
    applied = {k: v for k, v in container.items() if k not in NOT_APPLIED_HERE}
    binds = taskdef.exec_binds(host_dir, container=container["Name"]) if ecs_exec else []
    body = taskdef.create_request(applied, image, {}, network_container="", binds=binds)
    body["HostConfig"]["NetworkMode"] = "none"  # it owns the namespace, joins none
    body["Healthcheck"]["Interval"] = TEST_CHECK_INTERVAL_SECONDS * NANOSECONDS
    body["Env"] += [f"{k}={v}" for k, v in (extra_env or {}).items()]
    container_id = taskdef.create(name, body)
    taskdef.start(container_id)
    return container_id


# -- health and logs --------------------------------------------------------------------------


def timestamp(text: str) -> datetime.datetime:
    """Docker's RFC 3339 with nanoseconds, to a datetime (microseconds)."""
    return datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00")))


def container_state(name: str) -> dict[str, Any]:
    """The container's State, from the Engine API (cheaper than a `docker inspect` process)."""
    status, answer = engine.api("GET", f"/containers/{name}/json")
    assert status == 200, f"{name}: {answer}"
    return answer["State"]


def wait_exit(name: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = container_state(name)
        if not state["Running"]:
            return state["ExitCode"]
        time.sleep(0.3)
    raise AssertionError(f"{name} still running after {timeout:.0f} s")


def watch_health(name: str, timeout: float, until: Callable[[str], bool] = "healthy".__eq__
                 ) -> tuple[str, list[dict[str, Any]]]:
    """Poll the container's health until `until(status)` or it stops; every probe seen. Docker
    keeps the last five only (moby/moby@5d6db842 daemon/health.go maxLogEntries), so the log is
    read every 0.3 s while the probes run every second."""
    probes: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        state = container_state(name)
        health = state.get("Health") or {}
        status = health.get("Status", "")
        for probe in health.get("Log") or []:
            probes[probe["Start"]] = probe
        if until(status) or not state["Running"]:
            break
        time.sleep(0.3)
    return status, [probes[k] for k in sorted(probes)]


def log_lines(name: str) -> list[tuple[datetime.datetime, str]]:
    result = engine.docker("logs", "--timestamps", name, check=False)
    lines = []
    for line in (result.stdout + result.stderr).splitlines():
        stamp, _, text = line.partition(" ")
        if stamp[:1].isdigit():
            lines.append((timestamp(stamp), text))
    return sorted(lines)


def logged_at(name: str, text: str) -> datetime.datetime:
    found = [stamp for stamp, line in log_lines(name) if text in line]
    assert found, f"{name} never logged {text!r}:\n" + "\n".join(t for _, t in log_lines(name))
    return found[0]


def shell(name: str, script: str) -> subprocess.CompletedProcess[str]:
    """`docker exec` as the container's own user; output and status, never raising."""
    return engine.docker("exec", name, "/bin/sh", "-c", script, check=False, timeout=60)


# -- a namespace of our own, linked to the task's ---------------------------------------------


@dataclass
class LinkedNamespace:
    """A network namespace made here (`ip netns add`), joined to a container's namespace by a
    veth pair created inside the two namespaces, so no interface appears in the machine's own.
    The addresses are TEST-NET-1 (RFC 5737, documentation only, routed nowhere): they exist in
    these two namespaces and nowhere else. The container's end plays the task's ENI address."""

    container_pid: int
    name: str = ""
    task_address: str = "192.0.2.1"
    client_address: str = "192.0.2.2"

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.name = self.name or f"llm-api-test-{tag}"
        self._client_if, self._task_if = f"llc{tag}", f"llt{tag}"  # at most 15 characters

    def _ip(self, *args: str, where: str = "client") -> None:
        ip = shutil.which("ip")
        assert ip, "no `ip` (iproute2): apt-get install -y --no-install-recommends iproute2"
        prefix = ([ip, "netns", "exec", self.name] if where == "client" else
                  ["nsenter", f"--net=/proc/{self.container_pid}/ns/net"])
        command = [ip, *args] if where == "host" else [*prefix, ip, *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, f"{' '.join(command)}: {result.stderr.strip()}"

    def open(self) -> LinkedNamespace:
        self._ip("netns", "add", self.name, where="host")
        try:
            self._ip("link", "set", "lo", "up")
            self._ip("link", "add", self._client_if, "type", "veth", "peer", "name",
                     self._task_if, "netns", str(self.container_pid))
            self._ip("addr", "add", f"{self.task_address}/30", "dev", self._task_if, where="task")
            self._ip("link", "set", self._task_if, "up", where="task")
            self._ip("addr", "add", f"{self.client_address}/30", "dev", self._client_if)
            self._ip("link", "set", self._client_if, "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Deleting the namespace destroys the veth pair with it (both ends)."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30,
                       check=False)

    def python(self, code: str, *args: str, timeout: float = 60) -> Any:
        """Run code with this Python inside the namespace; its last stdout line, as JSON."""
        result = subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", code,
                                 *args], capture_output=True, text=True, timeout=timeout,
                                check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


# One HTTP request from wherever it runs; status 0 and the error when no answer came.
HTTP_CLIENT = r"""
import json, sys, urllib.error, urllib.request
method, url, body, key = sys.argv[1:5]
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = "Bearer " + key
request = urllib.request.Request(url, data=body.encode() or None, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=20) as response:
        answer = {"status": response.status, "body": response.read().decode()}
except urllib.error.HTTPError as error:
    answer = {"status": error.code, "body": error.read().decode()}
except OSError as error:
    answer = {"status": 0, "body": repr(error)}
print(json.dumps(answer))
"""

# Whether a TCP connection to host:port is accepted, refused, or times out.
TCP_PROBE = r"""
import errno, json, socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.settimeout(5)
code = s.connect_ex((sys.argv[1], int(sys.argv[2])))
print(json.dumps("accepted" if code == 0 else errno.errorcode.get(code, str(code))))
"""
