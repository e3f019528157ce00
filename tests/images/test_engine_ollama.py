"""The Ollama image, built from ollama/Dockerfile unchanged and run on the private engine as each
environment's task definition says.

Its base is a STAND-IN for ollama/ollama (tests/images/standin_ollama: NOT OLLAMA; `ollama` is
tests/images/fake_ollama.py and serves the protocol double tests/ollama_double.py). What runs for
real: the project's Dockerfile steps (users, modes, the build-time pull), ollama/entrypoint.sh and
ollama/pull-model.sh under dash, the task's user, read-only root, tmpfs mounts, init process,
environment and health check command, applied by the engine. The "model" is a stand-in manifest
and blob; "loaded" is the double's /api/ps listing it after `ollama run`.
"""

from __future__ import annotations

import copy
import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import engine, standin, standin_ollama
from tests.images.common import OLLAMA_DOCKERFILE, healthcheck, parse_dockerfile
from tests.images.ollama_engine import (
    deployed_container,
    exec_enabled,
    logged_at,
    ollama_image,
    shell,
    start_task_container,
    timestamp,
    wait_exit,
    watch_health,
)
from tests.images.pod import mounts, process_ids
from tests.stacks.ecs_agent import EXEC_LOG_DIR
from tools import params

pytestmark = [pytest.mark.engine, pytest.mark.timeout(600)]

FINAL = parse_dockerfile(OLLAMA_DOCKERFILE).final
ENVIRONMENTS = params.environments()
ANY_ENV = ENVIRONMENTS[0]  # what holds in every environment, shown in one
LOAD_SECONDS = 2  # the stand-in's `ollama run` takes this long (FAKE_OLLAMA_RUN_SECONDS)
PASS_MARGIN = datetime.timedelta(seconds=0.5)  # well under LOAD_SECONDS


def environment(container: dict) -> dict[str, str]:
    return {e["Name"]: str(e["Value"]) for e in container["Environment"]}


def model_of(env: str) -> str:
    return environment(deployed_container(env, "ollama"))["OLLAMA_MODEL"]


@pytest.fixture
def run_container(docker_engine, tmp_path: Path) -> Iterator:
    """Start the deployed ollama container (or a variant of it); removed afterwards, always."""
    names: list[str] = []

    def start(env: str, container: dict | None = None, **extra_env: str) -> str:
        container = container or deployed_container(env, "ollama")
        name = f"llm-api-test-ollama-{env}-{uuid.uuid4().hex[:8]}"
        names.append(name)
        image = ollama_image(environment(container)["OLLAMA_MODEL"])
        start_task_container(name, container, image, tmp_path / name, exec_enabled(env),
                             extra_env)
        return name

    yield start
    if names:
        engine.docker("rm", "--force", *names, check=False)


def test_the_image_builds_unchanged_on_the_standin_base_and_names_it(docker_engine):
    model = model_of(ANY_ENV)
    image = ollama_image(model)
    config = engine.inspect("image", image)["Config"]
    labels = config["Labels"]
    assert labels[standin_ollama.STANDIN_LABEL].startswith(
        f"STAND-IN for {standin_ollama.from_name()}, NOT OLLAMA"), "the result names the stand-in"
    assert standin.STANDIN_LABEL in labels, "and the stand-in Python base under it"
    assert labels["llm-api.model"] == model
    assert config["User"] == FINAL.last("USER").args
    env = dict(item.split("=", 1) for item in config["Env"])
    for key, value in FINAL.env().items():
        assert env[key] == value.replace("${MODEL}", model), key
    assert config["Entrypoint"] == FINAL.last("ENTRYPOINT").exec_form()
    assert config["Cmd"] == FINAL.last("CMD").exec_form()
    assert config["Healthcheck"]["Test"] == healthcheck(FINAL).command
    probe = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image,
                          "-c", 'stat -c %u:%g "$OLLAMA_MODELS"; '
                          'find / -xdev -name "id_ed25519*" | wc -l').stdout.split()
    assert probe == [FINAL.last("USER").args, "0"], (
        "the baked models belong to the runtime user; no key pair of the build's server is baked")


def assert_healthy_only_once_loaded(name: str, model: str) -> None:
    """The container's health check fails while serve answers and the model loads, and passes
    only once the entrypoint's load is done (the stand-in's `run` takes LOAD_SECONDS)."""
    status, probes = watch_health(name, timeout=60)
    logs = "\n".join(f"{p['ExitCode']} {p['Output'].strip()}" for p in probes)
    assert status == "healthy", f"{status}\n{logs}\n" + engine.docker("logs", name).stderr
    # Serving (the check's `ollama ps` reached the server: no error output) but not loaded.
    serving_not_loaded = [p for p in probes if p["ExitCode"] != 0 and not p["Output"].strip()]
    assert serving_not_loaded, f"no probe failed while the model loaded:\n{logs}"
    first_pass = next(p for p in probes if p["ExitCode"] == 0)
    loaded = logged_at(name, f"loaded {model}")
    # A probe ends after its `ollama ps` was answered; the entrypoint logs "loaded" just after
    # the load (PASS_MARGIN covers that gap and the log's delivery; the load takes seconds).
    assert timestamp(first_pass["End"]) >= loaded - PASS_MARGIN, (
        f"healthy before the entrypoint logged the model loaded at {loaded}:\n{logs}")


def test_the_images_own_healthcheck_turns_healthy_only_once_the_model_is_loaded(docker_engine):
    # Compose and plain `docker run` use the image's HEALTHCHECK (ECS runs the task's). Only the
    # interval is given here; the engine keeps the image's command, timeout, start period and
    # retries (moby/moby@5d6db842, v20.10.24, daemon/commit.go merge, lines 77-94).
    model = model_of(ANY_ENV)
    image = ollama_image(model)
    name = f"llm-api-test-ollama-image-{uuid.uuid4().hex[:8]}"
    home = FINAL.env()["HOME"]
    try:
        engine.docker("run", "--detach", "--name", name, "--network", "none", "--read-only",
                      "--tmpfs", "/tmp", "--tmpfs", home, "--health-interval", "1s",
                      "--env", f"FAKE_OLLAMA_RUN_SECONDS={LOAD_SECONDS}", image)
        config = engine.inspect("container", name)["Config"]
        assert config["Healthcheck"]["Test"] == healthcheck(FINAL).command
        assert_healthy_only_once_loaded(name, model)
    finally:
        engine.docker("rm", "--force", name, check=False)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_deployed_container_loads_the_baked_model_and_writes_only_its_tmpfs(env, run_container):
    container = deployed_container(env, "ollama")
    name = run_container(env, FAKE_OLLAMA_RUN_SECONDS=str(LOAD_SECONDS))
    config = engine.inspect("container", name)["Config"]
    assert config["Healthcheck"]["Test"] == container["HealthCheck"]["Command"], "the task's"
    assert_healthy_only_once_loaded(name, model_of(env))
    variables = environment(container)
    user = container["User"]
    result = shell(name, 'touch "$OLLAMA_MODELS/.write-probe"; '
                   'ollama show "$OLLAMA_MODEL" && echo shown; stat -c %u:%g "$OLLAMA_MODELS"; '
                   'ls "$HOME/.ollama"; find / -xdev -name "id_ed25519*" | wc -l')
    out = result.stdout.split()
    assert "Read-only file system" in result.stderr, "the baked model directory is read-only"
    assert out[:2] == ["shown", user], result.stdout
    assert "id_ed25519" in out, "serve wrote its key pair into HOME, the tmpfs"
    assert out[-1] == "0", "and nowhere on the root filesystem"
    table = mounts(name)
    assert "ro" in table["/"][1]
    home = next(t for t in container["LinuxParameters"]["Tmpfs"]
                if t["ContainerPath"] == variables["HOME"])
    fstype, options = table[home["ContainerPath"]]
    assert fstype == "tmpfs" and set(home["MountOptions"]) <= options
    assert f"size={home['Size'] * 1024}k" in options
    if exec_enabled(env):
        assert EXEC_LOG_DIR in table, "the ECS agent's Exec bind is in place beside the tmpfs"
    uid, gid = (int(part) for part in user.split(":"))
    # A probe or exec starting at that moment shows as `runc init` (runc's own process, still
    # root, until it sets the user and execs the command): not a process of the image.
    processes = {cmd: ids for cmd, ids in process_ids(name).items() if cmd != "runc init"}
    assert any("fake_ollama.py serve" in command for command in processes), processes
    assert set(processes.values()) == {(uid, gid)}, processes
    began = time.monotonic()
    engine.docker("stop", "--time", str(container["StopTimeout"]), name)
    state = engine.inspect("container", name)["State"]
    assert state["ExitCode"] == 0, "the entrypoint forwarded SIGTERM and serve exited cleanly"
    assert time.monotonic() - began < container["StopTimeout"]


def without_tmpfs(container: dict, path: str) -> dict:
    variant = copy.deepcopy(container)
    tmpfs = variant["LinuxParameters"]["Tmpfs"]
    assert any(t["ContainerPath"] == path for t in tmpfs), path
    variant["LinuxParameters"]["Tmpfs"] = [t for t in tmpfs if t["ContainerPath"] != path]
    return variant


def with_tmpfs_over(container: dict, path: str) -> dict:
    variant = copy.deepcopy(container)
    variant["LinuxParameters"]["Tmpfs"].append(
        {"ContainerPath": path, "MountOptions": ["nosuid", "nodev"], "Size": 16})
    return variant


def test_without_the_home_tmpfs_serve_cannot_write_its_key_and_the_container_stops(run_container):
    container = deployed_container(ANY_ENV, "ollama")
    name = run_container(ANY_ENV, without_tmpfs(container, environment(container)["HOME"]))
    assert wait_exit(name) == 1
    logs = engine.docker("logs", name).stderr
    assert "Read-only file system" in logs and "exited before it answered" in logs, logs


def test_a_mount_over_the_baked_models_hides_the_model_and_the_container_stops(run_container):
    container = deployed_container(ANY_ENV, "ollama")
    models = FINAL.env()["OLLAMA_MODELS"]
    name = run_container(ANY_ENV, with_tmpfs_over(container, models))
    assert wait_exit(name) == 1
    logs = engine.docker("logs", name).stderr
    assert f"could not load {model_of(ANY_ENV)}" in logs, logs
