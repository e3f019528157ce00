"""The gateway container of the generated task definition, applied by the private engine.

templates/service.json is rendered per environment (tools/render.py, params/<env>.json), and
its gateway container definition goes to the engine as the ECS agent sends it
(tests/images/taskdef.py: user, read-only root, tmpfs, capabilities, ulimits, init, memory,
environment, secrets, health check), plus the agent's ECS Exec binds where the service enables
Exec (tests/stacks/ecs_agent.py), onto the image built from app/Dockerfile on the STAND-IN base.
Ollama is the protocol double (a STAND-IN, no model runs) in the task's shared namespace
(tests/images/pod.py). Secrets get what ECS would inject: the rendered SSM parameter values, and
a GENERATED TEST VALUE for the Secrets Manager API key.

A setting the engine refuses, a health check command the image lacks, or a write the read-only
root refuses fails run_task_gateway; the last two tests feed it such variants (a tmpfs at the
agent's Exec log bind; an image whose gateway writes outside its tmpfs) and expect it to fail.
"""

from __future__ import annotations

import functools
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app import contract
from tests.images import engine, taskdef
from tests.images.common import APP_DOCKERFILE, copy_context
from tests.images.pod import Pod, mounts, process_ids, wait_for
from tests.stacks.ecs_agent import DUPLICATE_MOUNT_ERROR, EXEC_LOG_DIR
from tools import params, render

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

READ_ONLY_ERROR = "Read-only file system"  # strerror(EROFS), in a Python traceback
UNHANDLED = "unhandled error"  # app/middleware.py's event for an exception inside a request


@dataclass(frozen=True)
class TaskGateway:
    env: str
    container: dict[str, Any]
    templates: dict[str, dict]
    exec_enabled: bool


@functools.cache
def task_gateway(env: str) -> TaskGateway:
    rendered = render.render_environment(env)
    service = rendered.templates["service.json"]["Resources"]
    definitions = service["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    gateway = next(c for c in definitions if c["Name"] == "gateway")
    exec_enabled = service["Service"]["Properties"].get("EnableExecuteCommand") in (True, "true")
    return TaskGateway(env, gateway, rendered.templates, exec_enabled)


def exec_env() -> str:
    enabled = [env for env in params.environments() if task_gateway(env).exec_enabled]
    if not enabled:
        pytest.fail("no params environment enables ECS Exec: the Exec binds go untested")
    return enabled[0]


@dataclass
class TaskRun:
    pod: Pod
    task: TaskGateway
    secrets: dict[str, str]

    @property
    def key(self) -> str:
        return self.secrets[contract.setting("GATEWAY_API_KEYS").env].split(",")[0]

    def state(self) -> dict[str, Any]:
        return engine.inspect("container", self.pod.gateway)["State"]

    def failure(self) -> str | None:
        """Why the container cannot turn healthy, as soon as that is certain; None meanwhile."""
        state, logs = self.state(), self.pod.logs(self.pod.gateway)
        if READ_ONLY_ERROR in logs:
            return f"the read-only root refused a write:\n{logs}"
        if state["Status"] != "running":
            return f"the container stopped ({state['Status']}, exit {state['ExitCode']}):\n{logs}"
        for entry in state.get("Health", {}).get("Log") or []:
            if entry["ExitCode"] not in (0, 1):  # 1: unhealthy; others: it could not run
                return f"the health check command could not run in the image: {entry}"
        if state["Health"]["Status"] == "unhealthy":
            return f"the task's health check turned UNHEALTHY: {state['Health']['Log'][-1:]}"
        return None

    def wait_healthy(self) -> None:
        check = self.task.container["HealthCheck"]
        budget = check["StartPeriod"] + (check["Interval"] + check["Timeout"]) * check["Retries"]
        failures: list[str] = []

        def healthy() -> bool:
            reason = self.failure()
            if reason:
                failures.append(reason)
                return True
            return self.state()["Health"]["Status"] == "healthy"

        wait_for(healthy, budget, "the task definition's health check to pass",
                 lambda: self.pod.logs(self.pod.gateway), interval=1)
        if failures:
            raise AssertionError(f"{self.task.env}: {failures[0]}")


def start_task_gateway(task: TaskGateway, image: str, host_dir: Path) -> TaskRun:
    """Create and start the gateway exactly as the task definition says, next to the double."""
    pod = Pod(f"llm-api-task-{task.env}-{uuid.uuid4().hex[:6]}", image)
    secrets = taskdef.secret_values(task.container, task.templates)
    try:
        pod.start_double(secrets[contract.setting("GATEWAY_MODELS").env].split(","))
        binds = taskdef.exec_binds(host_dir) if task.exec_enabled else []
        body = taskdef.create_request(task.container, image, secrets, pod.double, binds)
        taskdef.start(taskdef.create(pod.gateway, body))
    except BaseException:
        pod.remove()
        raise
    return TaskRun(pod, task, secrets)


def run_task_gateway(task: TaskGateway, image: str, host_dir: Path) -> TaskRun:
    run = start_task_gateway(task, image, host_dir)
    try:
        run.wait_healthy()
    except BaseException:
        run.pod.remove()
        raise
    return run


@pytest.fixture(scope="module")
def runs(gateway_image: str, tmp_path_factory) -> Iterator[dict[str, TaskRun | Exception]]:
    """Every environment's gateway started at once (their start periods overlap); a refusal
    is kept for that environment's test to raise."""
    started: dict[str, TaskRun | Exception] = {}
    try:
        for env in params.environments():
            try:
                started[env] = start_task_gateway(task_gateway(env), gateway_image,
                                                  tmp_path_factory.mktemp(f"exec-{env}"))
            except engine.EngineCommandError as refused:
                started[env] = refused
        yield started
    finally:
        for run in started.values():
            if isinstance(run, TaskRun):
                run.pod.remove()


@pytest.mark.parametrize("env", params.environments())
def test_the_engine_runs_the_gateway_with_the_task_definitions_settings(env, runs):
    run = runs[env]
    if isinstance(run, Exception):
        raise run
    container = run.task.container
    run.wait_healthy()
    host = engine.inspect("container", run.pod.gateway)["HostConfig"]
    linux = container["LinuxParameters"]
    assert host["ReadonlyRootfs"] is container["ReadonlyRootFilesystem"] is True
    assert host["Init"] is linux.get("InitProcessEnabled", False)
    assert host["Memory"] == container["Memory"] * taskdef.MIB
    table = mounts(run.pod.gateway)
    assert "ro" in table["/"][1], table["/"]
    for entry in linux["Tmpfs"]:
        fstype, options = table[entry["ContainerPath"]]
        assert fstype == "tmpfs", entry
        assert {*entry["MountOptions"], f"size={entry['Size'] * 1024}k"} <= options, options
    if run.task.exec_enabled:
        assert "rw" in table[EXEC_LOG_DIR][1] and table[EXEC_LOG_DIR][0] != "tmpfs", table
    uid, gid = (int(part) for part in container["User"].split(":"))
    assert set(process_ids(run.pod.gateway).values()) == {(uid, gid)}

    pod = run.pod
    model = run.secrets[contract.setting("GATEWAY_MODELS").env].split(",")[0]
    answers = {"/readyz": pod.http("GET", "/readyz")}
    for path, body in (("/api/generate", {"model": model, "prompt": "stand-in", "stream": False}),
                       ("/v1/chat/completions", {"model": model, "messages": [
                           {"role": "user", "content": "stand-in"}], "stream": True})):
        answers[path] = pod.http("POST", path, body=body, key=run.key)
    logs = pod.logs(pod.gateway)
    assert READ_ONLY_ERROR not in logs, f"the read-only root refused a write:\n{logs}"
    unhandled = [line for line in logs.splitlines() if UNHANDLED in line]
    assert not unhandled, f"the gateway failed inside a request (a refused write?): {unhandled}"
    assert {path: status for path, (status, _) in answers.items()} == dict.fromkeys(answers, 200), (
        answers)

    engine.docker("stop", "--time", str(container["StopTimeout"]), pod.gateway,
                  timeout=container["StopTimeout"] + 30)
    state = run.state()
    # initProcessEnabled: uvicorn is not PID 1, so its re-raised SIGTERM ends it (app/drain.py)
    # and the init process passes the status on: 128 + 15. A SIGKILL after the timeout: 137.
    expected = 143 if linux.get("InitProcessEnabled") else 0
    assert state["ExitCode"] == expected and not state["OOMKilled"], state


def test_the_engine_refuses_a_tmpfs_at_the_ecs_agents_exec_log_bind(gateway_image, tmp_path):
    """The duplicate-mount reproduction: a tmpfs where the agent binds its Exec log dir."""
    task = task_gateway(exec_env())
    variant = TaskGateway(task.env, taskdef.with_tmpfs(task.container, EXEC_LOG_DIR),
                          task.templates, task.exec_enabled)
    with pytest.raises(engine.EngineCommandError, match=DUPLICATE_MOUNT_ERROR):
        run_task_gateway(variant, gateway_image, tmp_path)


@pytest.fixture(scope="module")
def image_writing_outside_its_tmpfs(gateway_image: str, tmp_path_factory) -> Iterator[str]:
    """A temporary copy of the build context whose gateway writes to its working directory at
    start (outside every tmpfs); the committed app/ is not touched."""
    context = tmp_path_factory.mktemp("writes-outside")
    copy_context(engine.REPO, "app", context / "app")
    shutil.copy2(APP_DOCKERFILE, context / "app" / "Dockerfile")  # .dockerignore leaves it out
    shutil.copy2(engine.REPO / ".dockerignore", context / ".dockerignore")
    main = context / "app" / "main.py"
    main.write_text(main.read_text() + '\nopen("gateway-state.json", "w").close()\n')
    image = f"llm-api-test/gateway-writes-outside-tmpfs:{uuid.uuid4().hex[:8]}"
    engine.build_image(image, context, dockerfile=context / APP_DOCKERFILE.relative_to(engine.REPO))
    yield image
    engine.docker("image", "rm", "--force", image, check=False)


def test_a_gateway_that_writes_outside_its_tmpfs_fails_the_task_run(
        image_writing_outside_its_tmpfs, tmp_path):
    task = task_gateway(exec_env())
    with pytest.raises(AssertionError, match=READ_ONLY_ERROR):
        run_task_gateway(task, image_writing_outside_its_tmpfs, tmp_path)
