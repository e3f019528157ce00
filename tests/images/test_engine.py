"""Image tests that need a Docker engine: build both images, run them, one inference through
the compose stack with a real model.

They run wherever `docker info` succeeds (the CI workflow's engine job); elsewhere they skip
with the reason "no Docker engine" and report nothing as passed. The model is the contract's
default unless ENGINE_TEST_MODEL names another (a smaller one makes the run faster). Without a
GPU the stack runs with docker-compose.cpu.yml (slow, but it answers).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import contract
from stacks.service import ECS_EXEC_PATHS
from tests.images.common import (
    COMPOSE_CPU_FILE,
    COMPOSE_FILE,
    REPO,
    docker_engine_available,
    free_port,
    port_is_free,
)
from tests.stacks.ecs_agent import DUPLICATE_MOUNT_ERROR, EXEC_LOG_DIR

pytestmark = [pytest.mark.engine, pytest.mark.timeout(3600)]

MODEL = os.environ.get("ENGINE_TEST_MODEL") or contract.setting("GATEWAY_MODELS").default[0]
TAG = uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def docker() -> str:
    available, why = docker_engine_available()
    if not available:
        pytest.skip(f"no Docker engine ({why})")
    return shutil.which("docker") or "docker"


def run(*args: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                            cwd=REPO)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def http(method: str, url: str, body: dict | None = None, key: str | None = None,
         timeout: float = 600) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def inspect(docker: str, kind: str, name: str) -> dict:
    return json.loads(run(docker, kind, "inspect", name).stdout)[0]


@pytest.fixture(scope="module")
def gateway_image(docker: str) -> Iterator[str]:
    image = f"llm-api-test/gateway:{TAG}"
    run(docker, "build", "--file", "app/Dockerfile", "--tag", image, ".")
    yield image
    run(docker, "image", "rm", "--force", image, check=False)


@pytest.fixture(scope="module")
def ollama_image(docker: str) -> Iterator[str]:
    image = f"llm-api-test/ollama:{TAG}"
    run(docker, "build", "--build-arg", f"MODEL={MODEL}", "--tag", image, "ollama/")
    yield image
    run(docker, "image", "rm", "--force", image, check=False)


def test_gateway_image_answers_on_8000_turns_healthy_and_stops_on_sigterm(docker, gateway_image):
    config = inspect(docker, "image", gateway_image)["Config"]
    assert config["User"] == "10001:10001"
    assert "8000/tcp" in config["ExposedPorts"]
    port = free_port()
    name = f"llm-api-test-gateway-{TAG}"
    run(docker, "run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp",
        "--user", "10001:10001", "--env", f"GATEWAY_API_KEYS={secrets.token_hex(16)}",
        # The contract's values, as compose passes them (uvicorn's timeouts among them).
        "--env-file", str(REPO / "gateway.env"),
        "--publish", f"127.0.0.1:{port}:{contract.GATEWAY_PORT}", gateway_image)
    try:
        wait_for(lambda: http("GET", f"http://127.0.0.1:{port}/healthz", timeout=5)[0] == 200,
                 60, "/healthz on 8000")
        wait_for(lambda: inspect(docker, "container", name)["State"]["Health"]["Status"]
                 == "healthy", 120, "the image HEALTHCHECK to pass")
        run(docker, "stop", "--time", str(contract.TIMEOUTS.container_stop_timeout_seconds), name)
        state = inspect(docker, "container", name)["State"]
        assert state["ExitCode"] == 143, state  # uvicorn re-raises SIGTERM after draining
        assert not state["OOMKilled"]
    finally:
        run(docker, "rm", "--force", name, check=False)


def test_ollama_image_bakes_the_model_and_records_it(docker, ollama_image):
    config = inspect(docker, "image", ollama_image)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Labels"]["llm-api.model"] == MODEL
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["OLLAMA_MODEL"] == MODEL and env["OLLAMA_KEEP_ALIVE"] == "-1"
    assert "11434/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][:3] == ["CMD", "/bin/sh", "-c"]
    probe = run(docker, "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--tmpfs",
                "/home/ollama", "--entrypoint", "/bin/sh", ollama_image, "-c",
                'stat -c %u "$OLLAMA_MODELS"; ls "$OLLAMA_MODELS/manifests"; '
                'find / -xdev -name "id_ed25519*" 2>/dev/null | wc -l')
    owner, *rest = probe.stdout.split()
    assert owner == "10001", probe.stdout
    assert "registry.ollama.ai" in rest, "the model's manifest is baked"
    assert rest[-1] == "0", "no private key is baked into the image"


def test_docker_refuses_a_tmpfs_where_the_ecs_agent_binds_the_exec_log_dir(docker, gateway_image,
                                                                           tmp_path):
    # What the ECS agent asks Docker for in an Exec-enabled task (tests/stacks/ecs_agent.py):
    # a read-write bind of a host log dir at /var/log/amazon/ssm. The old task definition also
    # put a tmpfs there; Docker refuses that at create time. The current tmpfs set is accepted.
    host_log_dir = tmp_path / "exec-log"
    host_log_dir.mkdir()
    bind = ["--volume", f"{host_log_dir}:{EXEC_LOG_DIR}"]
    tmpfs_now = [arg for path in ECS_EXEC_PATHS for arg in ("--tmpfs", path)]
    name = f"llm-api-test-exec-{TAG}"
    refused = run(docker, "create", "--read-only", "--tmpfs", EXEC_LOG_DIR, *bind, gateway_image,
                  check=False)
    assert refused.returncode != 0, "Docker accepted a tmpfs and a bind at one destination"
    assert DUPLICATE_MOUNT_ERROR in refused.stderr, refused.stderr
    try:
        run(docker, "create", "--name", name, "--read-only", *tmpfs_now, *bind, gateway_image)
    finally:
        run(docker, "rm", "--force", name, check=False)


def gpu_available(docker: str) -> bool:
    runtimes = run(docker, "info", "--format", "{{json .Runtimes}}", check=False).stdout
    return "nvidia" in runtimes


@pytest.fixture(scope="module")
def stack(docker: str, tmp_path_factory) -> Iterator[dict]:
    if not port_is_free(contract.GATEWAY_PORT, "127.0.0.1"):
        pytest.fail(f"127.0.0.1:{contract.GATEWAY_PORT} is taken; compose publishes it")
    key = secrets.token_hex(24)
    env_file = Path(tmp_path_factory.mktemp("compose")) / ".env"
    env_file.write_text(f"GATEWAY_API_KEYS={key}\nOLLAMA_MODEL={MODEL}\n")
    files = ["-f", str(COMPOSE_FILE)]
    if not gpu_available(docker):
        files += ["-f", str(COMPOSE_CPU_FILE)]
    base = [docker, "compose", "--project-name", f"llm-api-test-{TAG}", "--project-directory",
            str(REPO), "--env-file", str(env_file), *files]
    try:
        run(*base, "up", "--detach", "--build", "--wait", "--wait-timeout", "1500")
        yield {"compose": base, "key": key}
    finally:
        logs = run(*base, "logs", "--no-color", check=False).stdout
        print(logs[-8000:])
        run(*base, "down", "--timeout", "30", check=False)


def test_compose_stack_serves_an_inference_through_the_gateway(stack):
    url = f"http://127.0.0.1:{contract.GATEWAY_PORT}"
    assert http("GET", f"{url}/readyz", timeout=10)[0] == 200, "ready: the model is loaded"
    status, body = http("POST", f"{url}/api/generate", {
        "model": MODEL, "prompt": "Say hello in one word.", "stream": False,
        "options": {"num_predict": 16}}, key=stack["key"])
    assert status == 200, body
    answer = json.loads(body)
    assert answer["done"] is True and answer["response"].strip(), answer
    status, body = http("POST", f"{url}/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 16}, key=stack["key"])
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"].strip()
    assert http("POST", f"{url}/api/generate", {"model": MODEL, "prompt": "x"})[0] == 401


def test_ollama_answers_on_11434_inside_the_namespace_only(stack):
    inside = run(*stack["compose"], "exec", "-T", "gateway", "python", "-c",
                 "import urllib.request; print(urllib.request.urlopen("
                 "'http://127.0.0.1:11434/api/ps', timeout=5).read().decode())")
    assert MODEL.split(":")[0] in inside.stdout, inside.stdout
    published = run(*stack["compose"], "port", "ollama", "11434", check=False)
    assert published.returncode != 0 or not published.stdout.strip(), "11434 is not published"
