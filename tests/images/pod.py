"""A task's network namespace on the private engine, with the Ollama protocol double in it.

In an awsvpc task every container shares one network namespace (the task's ENI), so the
gateway reaches Ollama on 127.0.0.1:11434 (docs/infrastructure.md; compose does the same with
`network_mode: service:ollama`). Here the namespace belongs to a container that runs the Ollama
protocol double, tests/ollama_double.py: a STAND-IN for the ollama container, no model runs. It
starts with `--network none` (loopback only: the engine has no bridge) and the gateway joins it
with `--network container:<double>`. Every probe runs inside that namespace (`docker exec` into
the double's container, whose process is not the gateway's), so no traffic leaves loopback and
nothing is published on the machine.

The double runs on the gateway image's Python (it needs only aiohttp, which the gateway ships),
from the file mounted read-only; the gateway image itself is not changed for it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app import contract
from tests.images import engine

DOUBLE_FILE = engine.REPO / "tests" / "ollama_double.py"
DOUBLE_PORT = 11434  # the port OLLAMA_BASE_URL names (app/contract.py's default)
DOUBLE_USER = "10001:10001"

# Runs inside the namespace: one HTTP request, the answer as one JSON line.
_PROBE = r"""
import json, sys, urllib.error, urllib.request
method, url, body, headers, timeout = sys.argv[1:6]
request = urllib.request.Request(url, data=body.encode() or None, method=method,
                                 headers=json.loads(headers))
try:
    with urllib.request.urlopen(request, timeout=float(timeout)) as response:
        answer = {"status": response.status, "body": response.read().decode(errors="replace")}
except urllib.error.HTTPError as error:
    answer = {"status": error.code, "body": error.read().decode(errors="replace")}
except Exception as error:
    answer = {"status": 0, "body": repr(error)}
print(json.dumps(answer))
"""

# Runs inside the namespace: a streaming /api/generate; "first" once a line arrived, then a
# JSON summary (every line, parsed) when the body ends.
_STREAM = r"""
import json, sys, urllib.request
url, key, model = sys.argv[1:4]
request = urllib.request.Request(url, method="POST", headers={
    "Authorization": "Bearer " + key, "Content-Type": "application/json"},
    data=json.dumps({"model": model, "prompt": "stand-in", "stream": True}).encode())
lines = []
try:
    with urllib.request.urlopen(request, timeout=300) as response:
        status = response.status
        for raw in response:
            if raw.strip():
                if not lines:
                    print("first", flush=True)
                lines.append(json.loads(raw))
    print(json.dumps({"status": status, "lines": lines}), flush=True)
except Exception as error:
    print(json.dumps({"status": 0, "error": repr(error), "lines": lines}), flush=True)
"""

_PROCESSES = r"""
import json, os
found = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip()
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
    except OSError:
        continue
    found[cmd] = (int(status["Uid"].split()[1]), int(status["Gid"].split()[1]))
print(json.dumps(found))
"""


@dataclass
class Pod:
    name: str
    runtime_image: str  # the image whose Python runs the double

    @property
    def double(self) -> str:
        return f"{self.name}-ollama-double"

    @property
    def gateway(self) -> str:
        return f"{self.name}-gateway"

    def start_double(self, models: Sequence[str], tokens: int = 8,
                     token_delay: float = 0.0) -> None:
        engine.docker(
            "run", "--detach", "--name", self.double, "--network", "none", "--read-only",
            "--user", DOUBLE_USER, "--no-healthcheck", "--entrypoint", "python",
            "--volume", f"{DOUBLE_FILE}:/double/ollama_double.py:ro",
            self.runtime_image, "/double/ollama_double.py", "--port", str(DOUBLE_PORT),
            "--models", ",".join(models), "--tokens", str(tokens),
            "--token-delay", str(token_delay))
        wait_for(lambda: self.http("GET", "/api/version", port=DOUBLE_PORT)[0] == 200, 30,
                 "the Ollama protocol double (stand-in) to answer in the namespace",
                 lambda: self.logs(self.double))

    def http(self, method: str, path: str, port: int = contract.GATEWAY_PORT,
             body: dict[str, Any] | None = None, key: str | None = None,
             timeout: float = 10) -> tuple[int, str]:
        """One request from inside the namespace (the double's container) to 127.0.0.1."""
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        result = engine.docker(
            "exec", self.double, "python", "-c", _PROBE, method,
            f"http://127.0.0.1:{port}{path}", "" if body is None else json.dumps(body),
            json.dumps(headers), str(timeout), timeout=timeout + 30)
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        return answer["status"], answer["body"]

    def stream(self, key: str, model: str) -> subprocess.Popen[str]:
        """A streaming generation through the gateway, from inside the namespace; read
        "first" from its stdout, then its JSON summary."""
        return subprocess.Popen(
            [engine.docker_client(), "exec", self.double, "python", "-c", _STREAM,
             f"http://127.0.0.1:{contract.GATEWAY_PORT}/api/generate", key, model],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=engine.engine_env())

    def logs(self, container: str) -> str:
        result = engine.docker("logs", container, check=False)
        return (result.stdout + result.stderr)[-6000:]

    def remove(self) -> None:
        engine.docker("rm", "--force", self.gateway, self.double, check=False)


def wait_for(predicate: Any, timeout: float, what: str, context: Any = None,
             interval: float = 0.5) -> None:
    """Poll predicate until true; on timeout fail naming what and (if given) context()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    detail = f"\n{context()}" if context else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


def process_ids(container: str) -> dict[str, tuple[int, int]]:
    """Command line -> (effective uid, gid) of every process in the container (its /proc)."""
    result = engine.docker("exec", container, "python", "-c", _PROCESSES)
    return {cmd: (ids[0], ids[1]) for cmd, ids in json.loads(result.stdout).items() if cmd}


def mounts(container: str) -> dict[str, tuple[str, set[str]]]:
    """Mount point -> (filesystem type, options) inside the container (/proc/self/mounts)."""
    text = engine.docker("exec", container, "cat", "/proc/self/mounts").stdout
    table = {}
    for line in text.splitlines():
        _, point, fstype, options, *_ = line.split()
        table[point] = (fstype, set(options.split(",")))
    return table
