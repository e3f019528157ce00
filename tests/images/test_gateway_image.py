"""The gateway image, built from app/Dockerfile and run on the project's private engine.

Built on the STAND-IN base (tests/images/standin.py: Debian's python3.11 under the Dockerfile's
FROM name, not the official image). Its Ollama upstream is the protocol double
tests/ollama_double.py, a STAND-IN (no model runs), in the container whose network namespace the
gateway joins (tests/images/pod.py), as in the task.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from app import contract
from tests.images import engine, standin
from tests.images.common import (
    APP_DOCKERFILE,
    GATEWAY_ENV,
    healthcheck,
    parse_dockerfile,
    seconds,
    task_containers,
    without_ecs_exec,
)
from tests.images.pod import Pod, mounts, process_ids, wait_for
from tests.images.taskdef import generated_secret, tmpfs_args

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

FINAL = parse_dockerfile(APP_DOCKERFILE).final
TASK = task_containers()["gateway"]
TASK_TMPFS = without_ecs_exec(TASK["LinuxParameters"]["Tmpfs"])
MODELS = contract.setting("GATEWAY_MODELS").default
KEY = generated_secret()  # a GENERATED TEST VALUE for GATEWAY_API_KEYS


def gateway_args(pod: Pod) -> list[str]:
    """The image under the task's read-only root and tmpfs, the contract's values (gateway.env,
    as compose passes them) and a test key; its own USER, CMD and HEALTHCHECK."""
    return ["--detach", "--name", pod.gateway, "--network", f"container:{pod.double}",
            "--read-only", *tmpfs_args(TASK_TMPFS), "--env-file", str(GATEWAY_ENV),
            "--env", f"GATEWAY_API_KEYS={KEY}"]


def start_pod(gateway_image: str, **double_knobs: float) -> Pod:
    pod = Pod(f"llm-api-test-{uuid.uuid4().hex[:8]}", gateway_image)
    try:
        pod.start_double(MODELS, **double_knobs)  # type: ignore[arg-type]
        engine.docker("run", *gateway_args(pod), gateway_image)
        wait_for(lambda: pod.http("GET", "/healthz")[0] == 200, 60, "/healthz on "
                 f"{contract.GATEWAY_PORT}", lambda: pod.logs(pod.gateway))
    except BaseException:
        pod.remove()
        raise
    return pod


@pytest.fixture(scope="module")
def pod(gateway_image: str) -> Iterator[Pod]:
    pod = start_pod(gateway_image)
    yield pod
    pod.remove()


def test_the_image_is_built_on_the_standin_base_with_the_dockerfiles_settings(gateway_image):
    config = engine.inspect("image", gateway_image)["Config"]
    assert config["Labels"][standin.STANDIN_LABEL].startswith(
        f"STAND-IN for {standin.from_name()}"), "the result names the stand-in base"
    assert config["User"] == FINAL.last("USER").args
    assert {f"{port}/tcp" for port in FINAL.last("EXPOSE").args.split()} <= set(
        config["ExposedPorts"])
    assert config["Cmd"] == FINAL.last("CMD").exec_form()
    check = healthcheck(FINAL)
    assert config["Healthcheck"]["Test"] == check.command
    for option in ("interval", "timeout", "start-period"):
        field = {"start-period": "StartPeriod"}.get(option, option.title())
        assert config["Healthcheck"][field] == seconds(check.options[option]) * 10**9, option
    assert config["Healthcheck"]["Retries"] == int(check.options["retries"])
    env = dict(item.split("=", 1) for item in config["Env"])
    for key, value in FINAL.env().items():
        if "${PATH}" in value:  # PATH="/opt/venv/bin:${PATH}": the base's PATH follows
            assert env[key].startswith(value.split("${PATH}")[0]), key
        else:
            assert env[key] == value, key


def test_the_container_answers_on_8000_and_serves_through_the_double(pod):
    assert pod.http("GET", "/healthz")[0] == 200
    wait_for(lambda: pod.http("GET", "/readyz")[0] == 200, 30, "/readyz (the double's model "
             "listed as loaded)", lambda: pod.logs(pod.gateway))
    status, body = pod.http("POST", "/api/generate", body={
        "model": MODELS[0], "prompt": "stand-in", "stream": False}, key=KEY)
    assert status == 200, body
    assert json.loads(body)["done"] is True
    assert pod.http("POST", "/api/generate", body={"model": MODELS[0], "prompt": "x"})[0] == 401


def test_every_process_runs_as_the_tasks_user(pod):
    uid, gid = (int(part) for part in TASK["User"].split(":"))
    processes = process_ids(pod.gateway)
    assert any("uvicorn" in command for command in processes), processes
    assert set(processes.values()) == {(uid, gid)}, processes


def test_the_root_is_read_only_and_only_the_tasks_tmpfs_is_writable(pod):
    table = mounts(pod.gateway)
    assert "ro" in table["/"][1], table["/"]
    for entry in TASK_TMPFS:
        fstype, options = table[entry["ContainerPath"]]
        assert fstype == "tmpfs" and set(entry["MountOptions"]) <= options, (entry, options)
    workdir = FINAL.last("WORKDIR").args
    probe = ("import errno, sys\nfor path in sys.argv[1:]:\n    try:\n"
             "        open(path + '/.write-probe', 'w').close(); print(path, 'written')\n"
             "    except OSError as e:\n        print(path, errno.errorcode[e.errno])\n")
    targets = ["/", workdir, f"{workdir}/app", "/opt/venv", "/var/tmp", "/run",
               *[e["ContainerPath"] for e in TASK_TMPFS]]
    result = engine.docker("exec", pod.gateway, "python", "-c", probe, *targets)
    outcome = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines())
    writable = {e["ContainerPath"] for e in TASK_TMPFS}
    for path in targets:
        expected = "written" if path in writable else "EROFS"
        assert outcome[path] == expected, (path, outcome)


def test_the_images_healthcheck_turns_healthy(pod):
    check = healthcheck(FINAL)
    budget = (seconds(check.options["start-period"])
              + seconds(check.options["interval"]) * int(check.options["retries"]))
    wait_for(lambda: engine.inspect("container", pod.gateway)["State"]["Health"]["Status"]
             == "healthy", budget, "the image's HEALTHCHECK to pass",
             lambda: json.dumps(engine.inspect("container", pod.gateway)["State"]), interval=1)
    log = engine.inspect("container", pod.gateway)["State"]["Health"]["Log"]
    assert log and log[-1]["ExitCode"] == 0, log


def test_sigterm_drains_an_in_flight_stream_within_the_stop_timeout(gateway_image):
    stop_timeout = TASK["StopTimeout"]
    assert stop_timeout == contract.TIMEOUTS.container_stop_timeout_seconds
    tokens, delay = 16, 0.25  # a stream of 4 s: well inside uvicorn's graceful shutdown
    assert tokens * delay < contract.TIMEOUTS.graceful_shutdown_seconds / 2
    pod = start_pod(gateway_image, tokens=tokens, token_delay=delay)
    try:
        client = pod.stream(KEY, MODELS[0])
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "first", client.stderr.read()
        began = time.monotonic()
        engine.docker("stop", "--time", str(stop_timeout), pod.gateway,
                      timeout=stop_timeout + 30)
        stopped_after = time.monotonic() - began
        out, err = client.communicate(timeout=60)
        summary = json.loads(out.strip().splitlines()[-1])
        state = engine.inspect("container", pod.gateway)["State"]
    finally:
        pod.remove()
    assert summary["status"] == 200, (summary, err)
    lines = summary["lines"]
    assert lines[-1]["done"] is True, lines[-3:]
    assert not any("error" in line for line in lines), "the drain cut the stream"
    assert sum(not line["done"] for line in lines) == tokens
    assert tokens * delay / 2 < stopped_after < stop_timeout, (
        f"stopped after {stopped_after:.1f} s: the stream was not waited for, or SIGKILL came")
    # uvicorn re-raises SIGTERM after the drain (app/drain.py), but here it is the container's
    # PID 1, and the kernel drops a signal PID 1 has no handler for (pid_namespaces(7)): it
    # ends with 0. Under the task's initProcessEnabled it is not PID 1: 143 (test_task_definition).
    assert state["ExitCode"] == 0 and not state["OOMKilled"], state
