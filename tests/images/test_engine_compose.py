"""docker-compose.yml brought up with Compose v1 (Debian's docker-compose) on the private engine.

The images are prebuilt there from the project's Dockerfiles: the gateway on the stand-in Python
base, Ollama on the STAND-IN for ollama/ollama (NOT OLLAMA: the protocol double answers, no model
runs). Two files go with docker-compose.yml, each difference named:
- the GPU-less override docker-compose.cpu.yml uses `!reset`, which Compose v1 cannot read, so
  its resets are applied here to a copy of docker-compose.yml (cpu_for_compose_v1); Compose v2,
  which reads it itself, is not installed here (test_compose.py checks it where it is);
- tests/images/compose.engine.yml: the engine has no bridge and no port forwarding, so Ollama's
  namespace has its loopback only, and probes run every second.
Outside the stack's namespace is a namespace made here and linked to it (LinkedNamespace): a
client there plays the host that compose's port publication would let in, and shows what the
task's ENI side sees. The 127.0.0.1:8000 publication itself is not exercised (nothing forwards
it on this engine); test_compose.py and test_parity.py check its form.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.images import engine, standin_ollama
from tests.images.common import (
    COMPOSE_CPU_FILE,
    ENV_EXAMPLE,
    REPO,
    env_file,
    load_compose,
)
from tests.images.ollama_engine import (
    HTTP_CLIENT,
    TCP_PROBE,
    LinkedNamespace,
    logged_at,
    ollama_image,
    timestamp,
    watch_health,
)
from tests.images.taskdef import generated_secret

ENGINE_OVERRIDE = Path(__file__).with_name("compose.engine.yml")
DOCKER_COMPOSE = shutil.which("docker-compose")
GATEWAY_PORT = 8000
OLLAMA_PORT = 11434


# -- docker-compose.cpu.yml for Compose v1 ----------------------------------------------------


class Reset:
    def __init__(self, value: Any) -> None:
        self.value = value


class _ResetLoader(yaml.SafeLoader):
    """YAML with Compose v2's `!reset` tag (https://docs.docker.com/reference/compose-file/merge/,
    "Reset value"): the attribute is removed from the merged model."""


_ResetLoader.add_constructor("!reset", lambda loader, node: Reset(
    loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else
    loader.construct_mapping(node) if isinstance(node, yaml.MappingNode) else
    loader.construct_scalar(node)))


def reset_paths(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where the override resets; anything else it would set is refused (not merged here)."""
    if isinstance(node, Reset):
        return [path]
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in reset_paths(value, (*path, key))]
    raise ValueError(f"{COMPOSE_CPU_FILE.name}: {'.'.join(path)} sets a value; only !reset is "
                     "applied for Compose v1 here (extend cpu_for_compose_v1)")


def cpu_for_compose_v1(base: dict[str, Any], override_text: str) -> tuple[dict[str, Any], list]:
    """docker-compose.yml with docker-compose.cpu.yml's resets applied, as Compose v2 merges
    the two files; (the copy, the paths removed)."""
    copy = json.loads(json.dumps(base))
    paths = reset_paths(yaml.load(override_text, Loader=_ResetLoader))  # noqa: S506 (SafeLoader)
    for path in paths:
        parent = copy
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
    return copy, paths


def test_the_v1_copy_is_docker_compose_yml_less_what_the_cpu_override_resets():
    base = load_compose()
    copy, paths = cpu_for_compose_v1(base, COMPOSE_CPU_FILE.read_text())
    assert paths, "docker-compose.cpu.yml resets something (the GPU reservation)"
    for path in paths:
        node = base
        for key in path:
            node = node[key]
        assert node, f"{'.'.join(path)}: the reset removes a value docker-compose.yml sets"
    # Nothing else differs: put the removed values back and the files are equal.
    restored = json.loads(json.dumps(copy))
    for path in paths:
        source, target = base, restored
        for key in path[:-1]:
            source, target = source[key], target[key]
        target[path[-1]] = source[path[-1]]
    assert restored == base


# -- the stack --------------------------------------------------------------------------------


def compose(base: list[str], *args: str, timeout: float = 180,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout,
                            cwd=REPO, env=engine.engine_env(), check=False)
    assert not check or result.returncode == 0, f"docker-compose {' '.join(args)}\n" \
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def stack(docker_engine, gateway_image: str, tmp_path_factory) -> Iterator[dict[str, Any]]:
    if DOCKER_COMPOSE is None:
        pytest.fail("no docker-compose: apt-get install -y --no-install-recommends "
                    "docker-compose (.ci/run does)")
    raw = load_compose()
    values = env_file(ENV_EXAMPLE) | {"GATEWAY_API_KEYS": generated_secret()}
    model = values["OLLAMA_MODEL"]
    # compose's image names, tagged on the private engine to the images built here.
    tags = {raw["services"]["ollama"]["image"]: ollama_image(model),
            raw["services"]["gateway"]["image"]: gateway_image}
    for name, image in tags.items():
        engine.docker("tag", image, name)
    scratch = Path(tmp_path_factory.mktemp("compose"))
    (scratch / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    copy, _ = cpu_for_compose_v1(raw, COMPOSE_CPU_FILE.read_text())
    (scratch / "docker-compose.v1.yml").write_text(yaml.safe_dump(copy, sort_keys=False))
    project = f"llm-api-test-{uuid.uuid4().hex[:8]}"
    base = [DOCKER_COMPOSE, "--project-name", project, "--project-directory", str(REPO),
            "--env-file", str(scratch / ".env"), "-f", str(scratch / "docker-compose.v1.yml"),
            "-f", str(ENGINE_OVERRIDE)]
    namespace = None
    try:
        compose(base, "up", "--detach", "--no-build")
        ids = {s: compose(base, "ps", "-q", s).stdout.strip() for s in ("ollama", "gateway")}
        for service, container in ids.items():
            status, _ = watch_health(container, timeout=90)
            assert status == "healthy", f"{service}: {status}\n" + compose(
                base, "logs", "--no-color", check=False).stdout[-4000:]
        pid = engine.inspect("container", ids["ollama"])["State"]["Pid"]
        namespace = LinkedNamespace(pid).open()
        yield {"compose": base, "ids": ids, "key": values["GATEWAY_API_KEYS"], "model": model,
               "outside": namespace}
    finally:
        if namespace is not None:
            namespace.close()
        print(compose(base, "logs", "--no-color", check=False).stdout[-6000:])
        compose(base, "down", "--timeout", "30", check=False)
        leftovers = engine.docker("ps", "-aq", "--filter",
                                  f"label=com.docker.compose.project={project}").stdout.split()
        if leftovers:
            engine.docker("rm", "--force", *leftovers, check=False)
        engine.docker("image", "rm", *tags, check=False)  # the tags only; the images stay


def outside(stack: dict[str, Any], method: str, path: str, body: dict | None = None,
            key: str | None = None) -> tuple[int, str]:
    """A request from the linked namespace to the stack namespace's address, port 8000."""
    namespace = stack["outside"]
    answer = namespace.python(HTTP_CLIENT, method,
                              f"http://{namespace.task_address}:{GATEWAY_PORT}{path}",
                              "" if body is None else json.dumps(body), key or "")
    return answer["status"], answer["body"]


def inside(stack: dict[str, Any], service: str, code: str, *args: str) -> Any:
    """Python in a service's container (its user, inside the shared namespace)."""
    result = engine.docker("exec", stack["ids"][service], "python3", "-c", code, *args)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.engine
def test_both_services_start_and_the_gateway_waits_for_the_loaded_model(stack):
    ollama = engine.inspect("container", stack["ids"]["ollama"])
    gateway = engine.inspect("container", stack["ids"]["gateway"])
    assert gateway["HostConfig"]["NetworkMode"] == f"container:{ollama['Id']}", "service:ollama"
    assert standin_ollama.STANDIN_LABEL in ollama["Config"]["Labels"], "named as the stand-in"
    loaded = logged_at(stack["ids"]["ollama"], f"loaded {stack['model']}")
    assert timestamp(gateway["State"]["StartedAt"]) > loaded, (
        "depends_on service_healthy: the gateway starts once the model is loaded")


def generations_seen(stack: dict[str, Any]) -> int:
    """/api/generate requests for the model that the stand-in Ollama recorded (inside the
    namespace: its /_double/records on 127.0.0.1:11434)."""
    answer = inside(stack, "ollama", "import urllib.request; print(urllib.request.urlopen("
                    "'http://127.0.0.1:11434/_double/records', timeout=5).read().decode())")
    return sum(r["path"] == "/api/generate" and r["model"] == stack["model"]
               for r in answer["records"])


@pytest.mark.engine
def test_a_client_outside_reaches_the_gateway_and_the_gateway_reaches_ollama(stack):
    model, key = stack["model"], stack["key"]
    assert outside(stack, "GET", "/healthz")[0] == 200
    assert outside(stack, "GET", "/readyz")[0] == 200, "ready: the stand-in lists the model loaded"
    before = generations_seen(stack)
    status, body = outside(stack, "POST", "/api/generate", {
        "model": model, "prompt": "through compose", "stream": False}, key=key)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["done"] is True and answer["eval_count"] > 0, answer
    assert generations_seen(stack) == before + 1, "the gateway reached Ollama on 127.0.0.1:11434"
    status, body = outside(stack, "POST", "/v1/chat/completions", {
        "model": model, "messages": [{"role": "user", "content": "hi"}]}, key=key)
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"], body
    assert outside(stack, "POST", "/api/generate", {"model": model, "prompt": "x"})[0] == 401


@pytest.mark.engine
def test_ollama_answers_inside_its_namespace_only(stack):
    namespace = stack["outside"]
    probe = lambda port: namespace.python(TCP_PROBE, namespace.task_address, str(port))  # noqa: E731
    assert probe(GATEWAY_PORT) == "accepted", "the namespace's address answers from outside"
    assert probe(OLLAMA_PORT) == "ECONNREFUSED", "Ollama listens on the namespace's loopback only"
    listing = inside(stack, "gateway", "import urllib.request; print(urllib.request.urlopen("
                     "'http://127.0.0.1:11434/api/ps', timeout=5).read().decode())")
    assert [m["name"] for m in listing["models"]] == [stack["model"]], listing
    bindings = engine.inspect("container", stack["ids"]["ollama"])["HostConfig"]["PortBindings"]
    assert f"{OLLAMA_PORT}/tcp" not in (bindings or {}), "compose publishes no 11434"
