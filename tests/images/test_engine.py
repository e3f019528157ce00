"""Image tests that need a Docker engine: build both images, run them, one inference through
the compose stack with a real model.

They run wherever `docker info` succeeds (the CI workflow's engine job); elsewhere they skip
with the reason "no Docker engine" and report nothing as passed. The model is the contract's
default unless ENGINE_TEST_MODEL names another (a smaller one makes the run faster). Without a
GPU the stack runs with docker-compose.cpu.yml (slow, but it answers).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from app import contract
from stacks.service import ECS_EXEC_PATHS
from tests.images.common import (
    REPO,
    docker_engine_available,
    free_port,
)
from tests.stacks.ecs_agent import DUPLICATE_MOUNT_ERROR, EXEC_LOG_DIR

pytestmark = [pytest.mark.engine, pytest.mark.timeout(3600)]

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
