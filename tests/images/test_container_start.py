"""The gateway image's start command, run as a process: no Docker engine needed.

A fresh virtualenv gets app/requirements.txt and nothing else (what the image installs; cached
under .cache/images/, keyed by the file's hash and the interpreter; under /var/tmp instead when
uid 10001 could not reach the checkout, e.g. a clone in root's 0700 home directory). The exact CMD parsed from
app/Dockerfile runs in a copy of what the image copies (the build context after .dockerignore,
at the image's WORKDIR), with the image's ENV, the task definition's environment names (local
values; the Ollama protocol double stands in for Ollama), as uid 10001 when the tests run as
root, on read-only files. Then: the port answers /healthz, the image's HEALTHCHECK command
exits 0, and SIGTERM stops the server cleanly. A second test parses the same CMD with the same
environment through the installed uvicorn's own command line and checks that the timeouts it
would run with are the contract's (they come from the task's UVICORN_* values, not the CMD).

Port: the CMD hard-codes 8000. If 8000 is taken on this machine (another test run, a local
gateway), the test replaces the port in the CMD and in the HEALTHCHECK command with a free one
and says so in a warning; everything else stays exactly as written.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import contract
from tests.images.common import (
    APP_DOCKERFILE,
    REPO,
    copy_context,
    free_port,
    healthcheck,
    parse_dockerfile,
    port_answers,
    port_is_free,
    task_containers,
)
from tests.ollama_double import ThreadedDouble

pytestmark = pytest.mark.slow

CHECKOUT_CACHE = REPO / ".cache" / "images"
# Outside the checkout, for a checkout that other users cannot enter: keyed like the other one.
SHARED_CACHE = Path("/var/tmp") / f"llm-gateway-image-venvs-{os.geteuid()}"  # noqa: S108
REQUIREMENTS = REPO / "app" / "requirements.txt"
IMAGE = parse_dockerfile(APP_DOCKERFILE).final
# PATH of the official python images, which the Dockerfile's ENV PATH extends.
IMAGE_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_VENV = "/opt/venv"
RUNTIME_UID = 10001
API_KEY = "start-test-key-0123456789"
LOCAL_TASK_VALUES = {  # task Environment values only known in AWS -> local stand-ins
    "GATEWAY_CLUSTER_NAME": "local",
    "GATEWAY_SERVICE_NAME": "local",
    "FORWARDED_ALLOW_IPS": "127.0.0.1",
}


# -- the runtime virtualenv --------------------------------------------------------------------


def world_runnable(path: Path) -> bool:
    """Can another uid run this interpreter (every parent directory traversable by others)?"""
    path = path.resolve()
    if not path.stat().st_mode & stat.S_IXOTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def interpreter() -> tuple[Path, bool]:
    """A Python of the tests' minor version, and whether uid 10001 may run it."""
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(getattr(sys, "_base_executable", sys.executable))]
    found = shutil.which(f"python{minor}")
    if found:
        candidates.append(Path(found))
    candidates.append(Path(f"/usr/bin/python{minor}"))
    usable = []
    for candidate in candidates:
        if not candidate.exists():
            continue
        probe = subprocess.run([str(candidate), "-c", "import sys, venv, ensurepip; "
                                "print(f'{sys.version_info.major}.{sys.version_info.minor}')"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.strip() == minor:
            usable.append(candidate.resolve())
    assert usable, f"no Python {minor} with venv and ensurepip"
    for candidate in usable:
        if world_runnable(candidate):
            return candidate, True
    return usable[0], False


def venv_cache() -> Path:
    """Where the runtime virtualenv lives: somewhere uid 10001 can run it from.

    The checkout's .cache/ when others may enter the checkout; otherwise (a clone in root's
    0700 home directory) a directory of our own under /var/tmp, refused if anyone else owns it
    or may write to it, since its interpreter then runs the gateway.
    """
    if os.geteuid() != 0 or world_runnable(REPO):
        return CHECKOUT_CACHE
    SHARED_CACHE.mkdir(mode=0o755, exist_ok=True)
    info = SHARED_CACHE.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not (
        info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)), (
        f"{SHARED_CACHE} must be a directory owned by uid {os.geteuid()} that only it may write "
        f"to; remove it (rm -rf {SHARED_CACHE}) and run the tests again")
    return SHARED_CACHE


def runtime_venv(python: Path) -> Path:
    cache = venv_cache()
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + str(python).encode()).hexdigest()[:16]
    target = cache / f"gateway-venv-{key}"
    complete = target / ".complete"
    if complete.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([str(python), "-m", "venv", str(target)], check=True, timeout=300)
        # The same pip flags as app/Dockerfile's build stage.
        result = subprocess.run(
            [str(target / "bin" / "pip"), "install", "--disable-pip-version-check",
             "--only-binary=:all:", "-r", str(REQUIREMENTS)],
            capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        os.chmod(target, 0o755)  # noqa: S103 (uid 10001 runs this interpreter; read-only)
        complete.write_text(REQUIREMENTS.read_text())
    return target


# -- what the image holds and how ECS starts it -----------------------------------------------


def image_root(tmp: Path) -> Path:
    """The image's WORKDIR with what its COPY instructions from the context put there."""
    workdir = IMAGE.last("WORKDIR").args
    root = tmp / workdir.lstrip("/")
    root.mkdir(parents=True)
    copies = [i for i in IMAGE.all("COPY") if "--from" not in i.args]
    assert [i.args for i in copies] == ["app/ ./app/"], "update this test with the Dockerfile"
    copy_context(REPO, "app", root / "app")  # the build context is the repository root
    return root


def make_read_only(path: Path) -> None:
    for item in [path, *path.rglob("*")]:
        mode = item.stat().st_mode
        item.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) | stat.S_IROTH
                   | (stat.S_IXOTH if item.is_dir() else 0))


def image_env(venv: Path) -> dict[str, str]:
    env = {"PATH": IMAGE_BASE_PATH, "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    for key, value in IMAGE.env().items():
        env[key] = value.replace("${PATH}", env["PATH"]).replace(IMAGE_VENV, str(venv))
    return env


def task_env(ollama_url: str) -> dict[str, str]:
    gateway = task_containers()["gateway"]
    env = {}
    for item in gateway["Environment"]:
        name, value = item["Name"], item["Value"]
        if name == "OLLAMA_BASE_URL":
            env[name] = ollama_url  # the double's port instead of 11434
        elif isinstance(value, str):
            env[name] = value
        else:
            env[name] = LOCAL_TASK_VALUES[name]
    for item in gateway["Secrets"]:
        declared = contract.setting(item["Name"])
        env[item["Name"]] = API_KEY if declared.source is contract.Source.SECRET else (
            declared.default_text)
    return env


def with_port(argv: list[str], port: int) -> list[str]:
    return [arg.replace(f"127.0.0.1:{contract.GATEWAY_PORT}", f"127.0.0.1:{port}") for arg in argv]


def get(port: int, path: str, key: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def runtime() -> tuple[Path, bool]:
    python, others_may_run = interpreter()
    return runtime_venv(python), others_may_run


@pytest.fixture
def started(runtime, tmp_path) -> Iterator[dict]:
    venv, others_may_run = runtime
    as_runtime_user = os.geteuid() == 0 and others_may_run
    if os.geteuid() == 0 and not others_may_run:
        warnings.warn("no Python that uid 10001 may run: the gateway runs as root here",
                      stacklevel=1)
    scratch = Path(tempfile.mkdtemp(prefix="gateway-image-"))
    scratch.chmod(0o755)
    root = image_root(scratch)
    make_read_only(scratch)
    tmp = Path(tempfile.mkdtemp(prefix="gateway-tmp-"))  # the task's /tmp tmpfs
    tmp.chmod(0o1777)

    cmd = IMAGE.last("CMD").exec_form()
    check = healthcheck(IMAGE).command
    port = contract.GATEWAY_PORT
    if not port_is_free(port):
        port = free_port()
        cmd = [str(port) if (i > 0 and cmd[i - 1] == "--port") else a for i, a in enumerate(cmd)]
        check = with_port(check, port)
        warnings.warn(f"port {contract.GATEWAY_PORT} is busy on this machine: the CMD runs "
                      f"with --port {port} instead (everything else as written)", stacklevel=1)

    with ThreadedDouble() as double:
        env = {**image_env(venv), **task_env(double.url), "TMPDIR": str(tmp)}
        log = tmp_path / "gateway.log"
        with log.open("w") as handle:
            process = subprocess.Popen(
                cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=handle,
                stderr=subprocess.STDOUT, start_new_session=True,
                user=RUNTIME_UID if as_runtime_user else None,
                group=RUNTIME_UID if as_runtime_user else None,
                extra_groups=[] if as_runtime_user else None)
        try:
            deadline = time.monotonic() + 60
            while not port_answers(port):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the gateway did not listen:\n" + log.read_text()
                time.sleep(0.2)
            yield {"process": process, "port": port, "check": check, "env": env, "log": log,
                   "as_runtime_user": as_runtime_user, "root": root, "double": double,
                   "cmd": cmd}
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)


def run_check(started: dict) -> int:
    kind, *argv = started["check"]
    assert kind == "CMD"
    as_user = started["as_runtime_user"]
    return subprocess.run(argv, env=started["env"], cwd=started["root"], capture_output=True,
                          timeout=20, user=RUNTIME_UID if as_user else None,
                          group=RUNTIME_UID if as_user else None,
                          extra_groups=[] if as_user else None).returncode


@pytest.mark.timeout(900)  # the first run builds the cached virtualenv from PyPI
def test_image_cmd_serves_healthz_passes_its_healthcheck_and_stops_on_sigterm(started):
    process, port = started["process"], started["port"]
    if started["as_runtime_user"]:
        uids = Path(f"/proc/{process.pid}/status").read_text().split("Uid:")[1].split()[:4]
        assert set(uids) == {str(RUNTIME_UID)}, f"runs as the task's user, not {uids}"
    status, headers, body = get(port, "/healthz")
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"
    assert "server" not in {k.lower() for k in headers}, "--no-server-header"

    assert run_check(started) == 0, "the image's HEALTHCHECK command"

    # Settings came from the task's environment names: the secret authenticates, SSM values
    # apply, and OLLAMA_BASE_URL reaches the double.
    assert get(port, "/readyz")[0] == 200
    assert get(port, "/api/tags")[0] == 401
    assert get(port, "/api/tags", API_KEY)[0] == 200
    assert started["double"].requests_to("/api/tags"), "proxied to OLLAMA_BASE_URL"

    process.send_signal(signal.SIGTERM)
    returncode = process.wait(timeout=contract.TIMEOUTS.container_stop_timeout_seconds)
    log = started["log"].read_text()
    # uvicorn finishes its graceful shutdown, then re-raises SIGTERM with the default handler
    # (app/drain.py), so the process ends by the signal: 143 in a container, -15 from Popen.
    assert returncode == -signal.SIGTERM, f"exit {returncode}\n{log}"
    assert "Traceback" not in log, log
    print(f"gateway {'as uid 10001' if started['as_runtime_user'] else 'as this user'}: "
          f"{' '.join(started['cmd'])}; exit status after SIGTERM {returncode}\n{log}")
    assert run_check(started) != 0, "the health check fails once the server is gone"


@pytest.mark.timeout(900)
def test_the_runtime_environment_holds_only_the_gateway_requirements(runtime):
    venv, _ = runtime
    frozen = subprocess.run([str(venv / "bin" / "pip"), "freeze", "--all",
                             "--disable-pip-version-check"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    installed = {line.split("==")[0].lower().replace("_", "-")
                 for line in frozen.splitlines() if "==" in line}
    wanted = {line.split("==")[0].lower().replace("_", "-")
              for line in REQUIREMENTS.read_text().splitlines()
              if line and not line.startswith("#")}
    assert installed - {"pip", "setuptools", "wheel"} == wanted
    # uvicorn reads FORWARDED_ALLOW_IPS itself when --forwarded-allow-ips is not given.
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import os; os.environ['FORWARDED_ALLOW_IPS'] = '10.20.0.0/16'; "
         "from uvicorn.config import Config; "
         "print(Config('app.main:app', proxy_headers=True).forwarded_allow_ips)"],
        capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert "10.20.0.0/16" in probe.stdout


# What uvicorn's CLI resolves from argv and the environment, without serving: uvicorn.main:main
# (the click command the `uvicorn` script runs) calls uvicorn.main.run(app, **options) at its
# end; the probe replaces that function and prints the options.
RESOLVE_OPTIONS = """
import importlib, json, sys
module = importlib.import_module("uvicorn.main")  # the package's `main` attribute is the command
module.run = lambda app, **options: print(json.dumps(
    {"app": app, "timeout_keep_alive": options["timeout_keep_alive"],
     "timeout_graceful_shutdown": options["timeout_graceful_shutdown"],
     "port": options["port"]}))
module.main.main(args=sys.argv[1:], prog_name="uvicorn", standalone_mode=False)
"""


def resolved_uvicorn_options(venv: Path, cmd: list[str], env: dict[str, str]) -> dict:
    assert cmd[0] == "uvicorn"
    result = subprocess.run([str(venv / "bin" / "python"), "-c", RESOLVE_OPTIONS, *cmd[1:]],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(900)
def test_uvicorn_runs_the_image_cmd_with_the_budget_timeouts_from_the_task_environment(runtime):
    venv, _ = runtime
    cmd = IMAGE.last("CMD").exec_form()
    env = {**image_env(venv), **task_env("http://127.0.0.1:1")}
    options = resolved_uvicorn_options(venv, cmd, env)
    assert options == {"app": "app.main:app", "port": contract.GATEWAY_PORT,
                       "timeout_keep_alive": contract.TIMEOUTS.keep_alive_seconds,
                       "timeout_graceful_shutdown": contract.TIMEOUTS.graceful_shutdown_seconds}
    # The probe can fail: without the task's UVICORN_* values uvicorn falls back to its own
    # defaults (5 s keep-alive, no bound on the drain), and a flag in the CMD would win.
    bare = {k: v for k, v in env.items() if not k.startswith("UVICORN_")}
    assert resolved_uvicorn_options(venv, cmd, bare)["timeout_keep_alive"] == 5
    assert resolved_uvicorn_options(venv, cmd, bare)["timeout_graceful_shutdown"] is None
    flagged = [*cmd, "--timeout-keep-alive", "65"]
    assert resolved_uvicorn_options(venv, flagged, env)["timeout_keep_alive"] == 65
