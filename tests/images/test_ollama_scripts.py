"""The Ollama image's scripts, run as processes against a stand-in `ollama` CLI.

There is no Ollama binary here, so `ollama` is tests/images/fake_ollama.py (NOT OLLAMA: it
answers the subcommands the scripts call, its `serve` is the protocol double). What runs for
real is the scripts themselves under /bin/sh (dash, as in the Ubuntu-based ollama/ollama
image), with the image's environment: start-up, waiting, loading, the health check command,
signal forwarding, exit statuses and the build step's clean-up. The same scripts run inside the
image on the private engine in test_engine_ollama.py, with the same stand-in: no test here runs
real Ollama or a real model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.common import (
    OLLAMA_DOCKERFILE,
    REPO,
    free_port,
    healthcheck,
    parse_dockerfile,
    port_answers,
    task_containers,
)
from tests.images.fake_ollama import bake

pytestmark = pytest.mark.slow

ENTRYPOINT = REPO / "ollama" / "entrypoint.sh"
PULL_MODEL = REPO / "ollama" / "pull-model.sh"
FAKE = REPO / "tests" / "images" / "fake_ollama.py"
IMAGE = parse_dockerfile(OLLAMA_DOCKERFILE).final
MODEL = "llama3.2:1b"


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    import sys

    directory = tmp_path / "bin"
    directory.mkdir()
    wrapper = directory / "ollama"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(0o755)
    return directory


@pytest.fixture
def env(tmp_path: Path, fake_bin: Path) -> dict[str, str]:
    """The image's ENV, then the task's Environment (as ECS sets it), made local: a free port,
    a temporary HOME (a tmpfs in the task) and a temporary models directory."""
    values = {k: v for k, v in IMAGE.env().items()}
    values["OLLAMA_MODEL"] = MODEL  # ${MODEL}: the build argument's default
    for item in task_containers()["ollama"]["Environment"]:
        if isinstance(item["Value"], str):
            values[item["Name"]] = item["Value"]
    port = free_port()
    assert values["OLLAMA_HOST"] == "127.0.0.1:11434"
    values["OLLAMA_HOST"] = f"127.0.0.1:{port}"
    home = tmp_path / "home"
    home.mkdir()
    values["HOME"] = str(home)
    values["OLLAMA_MODELS"] = str(tmp_path / "models")
    bake(MODEL, Path(values["OLLAMA_MODELS"]))  # what the image's build step leaves
    values["PATH"] = f"{fake_bin}:/usr/local/bin:/usr/bin:/bin"
    values["OLLAMA_START_TIMEOUT_SECONDS"] = "20"
    return values


def port_of(env: dict[str, str]) -> int:
    return int(env["OLLAMA_HOST"].rsplit(":", 1)[1])


class Running:
    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[subprocess.Popen[str]] = []

    def _start(args: list[str], env: dict[str, str]) -> Running:
        log = tmp_path / f"run-{len(started)}.log"
        handle = log.open("w")
        process = subprocess.Popen(["/bin/sh", *args], env=env, stdin=subprocess.DEVNULL,
                                   stdout=handle, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        handle.close()
        started.append(process)
        return Running(process, log)

    yield _start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def run_check(command: list[str], env: dict[str, str]) -> int:
    """A Docker health check command as the engine runs it (CMD: exec; CMD-SHELL: sh -c)."""
    kind, *rest = command
    argv = rest if kind == "CMD" else ["/bin/sh", "-c", rest[0]]
    return subprocess.run(argv, env=env, capture_output=True, timeout=20).returncode


def image_check() -> list[str]:
    return healthcheck(IMAGE).command


def task_check(model: str) -> list[str]:
    kind, command = task_containers()["ollama"]["HealthCheck"]["Command"]
    return [kind, command["Fn::Sub"].replace("${ModelName}", model)]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def server_answers(env: dict[str, str]) -> bool:
    return subprocess.run(["ollama", "list"], env=env, capture_output=True,
                          timeout=20).returncode == 0


# -- entrypoint -------------------------------------------------------------------------------


def test_entrypoint_loads_the_model_then_stops_cleanly_on_sigterm(env, start):
    running = start([str(ENTRYPOINT)], env)
    wait_until(lambda: run_check(image_check(), env) == 0, 30, "the image health check")
    assert run_check(task_check(MODEL), env) == 0, "the task's health check agrees"
    assert run_check(task_check("other-model:7b"), env) != 0, "and names the model"
    assert f"loaded {MODEL}" in running.output()
    # serve wrote its key pair under $HOME: why HOME is a writable tmpfs in the task.
    assert (Path(env["HOME"]) / ".ollama" / "id_ed25519").exists()

    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=15) == 0, running.output()
    assert not port_answers(port_of(env)), "serve stopped with the entrypoint"


def test_health_check_fails_until_the_model_is_loaded(env, start):
    env["FAKE_OLLAMA_RUN_SECONDS"] = "4"
    running = start([str(ENTRYPOINT)], env)
    wait_until(lambda: server_answers(env), 20, "ollama serve to answer")
    assert run_check(image_check(), env) != 0, "serving, but the model is not loaded yet"
    wait_until(lambda: run_check(image_check(), env) == 0, 30, "the model to load")
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=15) == 0, running.output()


def test_sigterm_during_a_slow_model_load_stops_at_once(env, start):
    env["FAKE_OLLAMA_RUN_SECONDS"] = "120"
    running = start([str(ENTRYPOINT)], env)
    wait_until(lambda: "loading" in running.output(), 20, "the load to begin")
    began = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    assert running.wait(timeout=15) == 0, running.output()
    assert time.monotonic() - began < 10, "the signal waited for the load"
    assert not port_answers(port_of(env))


def test_a_model_that_cannot_load_stops_the_container(env, start):
    env["FAKE_OLLAMA_RUN_FAIL"] = "1"
    running = start([str(ENTRYPOINT)], env)
    assert running.wait(timeout=30) == 1, running.output()
    assert f"could not load {MODEL}" in running.output()
    assert not port_answers(port_of(env)), "serve was stopped, not left running unhealthy"


def test_a_model_missing_from_the_models_directory_cannot_load(env, start, tmp_path):
    env["OLLAMA_MODELS"] = str(tmp_path / "empty-models")  # nothing baked
    running = start([str(ENTRYPOINT)], env)
    assert running.wait(timeout=30) == 1, running.output()
    assert f"could not load {MODEL}" in running.output()
    assert "is not in $OLLAMA_MODELS" in running.output()


def test_a_server_that_cannot_start_ends_the_entrypoint(env, start):
    env["FAKE_OLLAMA_SERVE_FAIL"] = "1"
    running = start([str(ENTRYPOINT)], env)
    status = running.wait(timeout=30)
    assert status != 0, running.output()
    assert "exited before it answered" in running.output()


def test_entrypoint_without_a_model_refuses_to_start(env, start):
    del env["OLLAMA_MODEL"]
    running = start([str(ENTRYPOINT)], env)
    assert running.wait(timeout=10) != 0
    assert "OLLAMA_MODEL" in running.output()


def test_entrypoint_passes_other_commands_to_the_cli(env, start):
    running = start([str(ENTRYPOINT), "ps"], env)
    assert running.wait(timeout=20) == 1, "no server: `ollama ps` fails as the real CLI does"
    assert "could not connect" in running.output()


# -- build step -------------------------------------------------------------------------------


def build_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    values = dict(env)
    values["OLLAMA_BUILD_HOST"] = values.pop("OLLAMA_HOST")
    values["OLLAMA_MODELS"] = str(tmp_path / "build-models")  # empty: the step bakes it
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    values["TMPDIR"] = str(scratch)
    return values


def test_pull_step_bakes_the_model_and_leaves_no_server_and_no_key(env, start, tmp_path):
    values = build_env(env, tmp_path)
    running = start([str(PULL_MODEL), MODEL], values)
    assert running.wait(timeout=60) == 0, running.output()
    models = Path(values["OLLAMA_MODELS"])
    assert (models / "manifests" / "registry.ollama.ai" / "library" / "llama3.2" / "1b").exists()
    assert list(Path(values["TMPDIR"]).iterdir()) == [], "the temporary HOME was removed"
    assert not list(models.rglob("id_ed25519*")), "no key pair in the baked directory"
    assert not port_answers(int(values["OLLAMA_BUILD_HOST"].rsplit(":", 1)[1]))
    assert f"baked {MODEL}" in running.output()


def test_pull_step_fails_the_build_when_serve_cannot_start(env, start, tmp_path):
    values = build_env(env, tmp_path)
    values["FAKE_OLLAMA_SERVE_FAIL"] = "1"
    running = start([str(PULL_MODEL), MODEL], values)
    assert running.wait(timeout=60) == 1, running.output()
    assert "fake serve told to fail" in running.output(), "the server log is shown"
    assert list(Path(values["TMPDIR"]).iterdir()) == []
