"""The private Docker engine's lifecycle and client (tests/images/engine.py is the entry point).

The engine: dockerd with --iptables=false --ip6tables=false --bridge=none --ip-forward=false
(it changes no firewall rule, creates no interface and sets no sysctl of the machine), its own
data root, exec root, socket, pidfile and an empty daemon config under the checkout's
.cache/engine/ (the socket and exec root move to /tmp/llm-api-engine-<hash> when the checkout's
path is too long for a unix socket). Containers therefore have no network but their own
loopback (`--network none`), share one with `--network container:<name>` (the awsvpc and
compose `service:` model), or use `--network host`. A build reaches the network only with
`--network host` (build_image passes it). Nothing here uses the machine's /var/run/docker.sock:
every client call gets DOCKER_HOST=unix://<private socket> explicitly.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = REPO / ".cache" / "engine"
DATA_ROOT = STATE_DIR / "data"
PIDFILE = STATE_DIR / "dockerd.pid"
LOG_FILE = STATE_DIR / "dockerd.log"
DAEMON_CONFIG = STATE_DIR / "daemon.json"  # empty: /etc/docker/daemon.json does not apply
CLIENT_CONFIG = STATE_DIR / "client"  # DOCKER_CONFIG: no ~/.docker contexts or helpers
SESSIONS_DIR = STATE_DIR / "sessions"  # one lease file (a PID) per session using the engine
AUTOSTARTED = STATE_DIR / "autostarted"  # a session started it: the last one stops it
CLIENT_BIN = STATE_DIR / "bin"  # `docker` for docker-compose: the engine's own client
# unix socket paths are limited to 108 bytes (sun_path, unix(7)); the longest under the run
# dir is the managed containerd's "exec/containerd/containerd.sock.ttrpc".
_LONGEST_SOCKET_TAIL = len("/exec/containerd/containerd.sock.ttrpc")
_SUN_PATH_MAX = 107
CONTAINERD_NAMESPACE = "llm-api-test"  # private even where dockerd joins a system containerd
UNAVAILABLE_ENV = "LLM_API_ENGINE_UNAVAILABLE"  # set by `run` when the engine could not start
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def run_dir(repo: Path = REPO) -> Path:
    """Socket and exec root: under .cache/engine/run, or /tmp/llm-api-engine-<hash> when the
    checkout's path is too long for a unix socket (a fresh clone may live deep)."""
    preferred = repo / ".cache" / "engine" / "run"
    if len(str(preferred)) + _LONGEST_SOCKET_TAIL <= _SUN_PATH_MAX:
        return preferred
    digest = hashlib.sha256(str(repo).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"llm-api-engine-{digest}"


RUN_DIR = run_dir()
SOCKET = RUN_DIR / "docker.sock"
EXEC_ROOT = RUN_DIR / "exec"
DOCKER_HOST = f"unix://{SOCKET}"


class EngineCommandError(AssertionError):
    """A docker command on the private engine failed; the message has the command and output."""


def dockerd_binary() -> str | None:
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None)


def docker_client() -> str:
    """The client packaged with the dockerd we start (docker.io: /usr/bin/docker); a newer
    client elsewhere on PATH (/usr/local/bin) may lack the buildx plugin BuildKit needs there."""
    override = os.environ.get("LLM_API_DOCKER_CLIENT")
    dockerd = dockerd_binary()
    candidates = [override] if override else []
    if dockerd:
        candidates.append(str(Path(dockerd).parent / "docker"))
    candidates += ["/usr/bin/docker", shutil.which("docker") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise EngineCommandError("no docker client: install Debian's docker.io "
                             "(apt-get install -y --no-install-recommends docker.io)")


def engine_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for docker / docker-compose: the private socket and nothing else.

    DOCKER_* of the caller (a context, TLS settings, another host) are dropped; BuildKit is on
    (ollama/Dockerfile uses COPY --chmod); PATH starts with a `docker` that is the engine's own
    client, so docker-compose's CLI builds use it too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    CLIENT_CONFIG.mkdir(parents=True, exist_ok=True)
    CLIENT_BIN.mkdir(parents=True, exist_ok=True)
    link = CLIENT_BIN / "docker"
    client = docker_client()
    if not link.is_symlink() or os.readlink(link) != client:
        staged = CLIENT_BIN / f".docker-{os.getpid()}"  # renamed into place: sessions race here
        staged.unlink(missing_ok=True)
        staged.symlink_to(client)
        staged.replace(link)
    env.update({"DOCKER_HOST": DOCKER_HOST, "DOCKER_CONFIG": str(CLIENT_CONFIG),
                "DOCKER_BUILDKIT": "1", "COMPOSE_DOCKER_CLI_BUILD": "1", "LC_ALL": "C",
                "PATH": f"{CLIENT_BIN}{os.pathsep}{env.get('PATH', os.defpath)}"})
    env.update(extra or {})
    return env


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def docker(*args: str, timeout: float = 600, check: bool = True, input: str | None = None,
           env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the docker client against the private engine (never the machine's socket)."""
    command = [docker_client(), *args]
    shown = "docker " + " ".join(args)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                input=input, env=engine_env(env), cwd=REPO, check=False)
    except subprocess.TimeoutExpired as error:
        raise EngineCommandError(f"`{shown}` did not finish within {timeout:.0f} s") from error
    if check and result.returncode != 0:
        raise EngineCommandError(f"`{shown}` exited {result.returncode}\n--- stdout\n"
                                 f"{_tail(result.stdout)}\n--- stderr\n{_tail(result.stderr)}")
    return result


def build_image(tag: str, context: Path, dockerfile: Path | None = None,
                build_args: Mapping[str, str] | None = None, extra: Sequence[str] = (),
                timeout: float = 1200) -> str:
    """`docker build` on the private engine. `--network host`: with --bridge=none a build step
    reaches the network (PyPI for pip) only through the host's namespace."""
    args = ["build", "--network", "host", "--tag", tag]
    if dockerfile is not None:
        args += ["--file", str(dockerfile)]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    docker(*args, *extra, str(context), timeout=timeout)
    return tag


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


def api(method: str, path: str, body: object = None, timeout: float = 120) -> tuple[int, Any]:
    """One Engine API call on the private socket (https://docs.docker.com/reference/api/engine/):
    what the ECS agent does (it creates containers through the API, not the CLI)."""
    connection = _UnixConnection(SOCKET, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw) if raw else None
    except ValueError:
        return response.status, raw.decode(errors="replace")


def inspect(kind: str, name: str) -> dict:
    return json.loads(docker(kind, "inspect", name).stdout)[0]


# -- lifecycle --------------------------------------------------------------------------------


def answers(timeout: float = 2.0) -> bool:
    """The private engine answers `GET /_ping` (the Engine API's health route) on its socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(SOCKET))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = s.recv(4096).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status.startswith(b"HTTP/1.") and b" 200 " in status + b" "


def dockerd_args() -> list[str]:
    return [
        "--data-root", str(DATA_ROOT), "--exec-root", str(EXEC_ROOT),
        "--host", DOCKER_HOST, "--pidfile", str(PIDFILE), "--config-file", str(DAEMON_CONFIG),
        "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
        "--ip-masq=false", "--userland-proxy=false",
        "--containerd-namespace", CONTAINERD_NAMESPACE,
        "--containerd-plugins-namespace", f"{CONTAINERD_NAMESPACE}-plugins",
    ]


def _pid_of_ours(pidfile: Path) -> int | None:
    """The PID in pidfile if that process is alive (not a zombie) and is our dockerd."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    ours = str(DATA_ROOT).encode() in cmdline or str(EXEC_ROOT).encode() in cmdline
    return pid if ours and state != "Z" else None


_started: subprocess.Popen[bytes] | None = None  # the dockerd this process started


def _log_tail(lines: int = 5) -> str:
    try:
        text = LOG_FILE.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def start(timeout: float = START_TIMEOUT) -> tuple[bool, str]:
    """Start the private dockerd unless it answers already; (ok, why not)."""
    global _started
    if answers():
        return True, ""
    dockerd = dockerd_binary()
    if dockerd is None:
        return False, ("no dockerd on this machine: apt-get install -y --no-install-recommends "
                       "docker.io (.ci/run does)")
    if os.geteuid() != 0:
        return False, "dockerd needs root; run the engine tests as root (the CI engine job does)"
    stale = _pid_of_ours(PIDFILE)
    if stale is not None:  # ours, alive, but not answering: stop it before starting anew
        _terminate(stale, STOP_TIMEOUT)
    for directory in (DATA_ROOT, EXEC_ROOT, RUN_DIR):
        directory.mkdir(parents=True, exist_ok=True)
    DAEMON_CONFIG.write_text("{}\n")
    SOCKET.unlink(missing_ok=True)
    with LOG_FILE.open("ab") as log:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        process = subprocess.Popen([dockerd, *dockerd_args()], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers():
            _started = process
            return True, ""
        if process.poll() is not None:
            return False, f"dockerd exited {process.returncode}: {_log_tail()} (log: {LOG_FILE})"
        time.sleep(0.1)
    process.terminate()
    process.wait(STOP_TIMEOUT)
    return False, f"dockerd did not answer within {timeout:.0f} s: {_log_tail()}"


def _alive(pid: int) -> bool:
    if _started is not None and _started.pid == pid:
        return _started.poll() is None  # our child: reap it, a zombie is gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _terminate(pid: int, timeout: float) -> bool:
    """SIGTERM (dockerd stops its containers and its managed containerd), SIGKILL after
    timeout; True when it ended before the SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


def stop(timeout: float = STOP_TIMEOUT) -> tuple[bool, str]:
    """Stop the private dockerd by its PID (pidfile); its managed containerd too."""
    global _started
    pid = _pid_of_ours(PIDFILE)
    if pid is None and _started is not None and _started.poll() is None:
        pid = _started.pid
    containerd = _pid_of_ours(EXEC_ROOT / "containerd" / "containerd.pid")
    if pid is None and containerd is None:
        return True, "not running"
    clean = True
    if pid is not None:
        clean = _terminate(pid, timeout)
    containerd = _pid_of_ours(EXEC_ROOT / "containerd" / "containerd.pid")
    if containerd is not None:  # dockerd was killed before it could stop its containerd
        clean = _terminate(containerd, timeout) and clean
    if _started is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            _started.wait(5)
        _started = None
    SOCKET.unlink(missing_ok=True)
    AUTOSTARTED.unlink(missing_ok=True)
    return clean, "" if clean else "dockerd did not stop on SIGTERM; killed"


def ensure_engine(start_if_needed: bool = True) -> tuple[bool, str]:
    """(True, "") when the private engine answers (started here if needed), else (False, why)."""
    unavailable = os.environ.get(UNAVAILABLE_ENV)
    if unavailable:
        return False, unavailable
    if answers():
        return True, ""
    if not start_if_needed:
        return False, f"no private engine answers on {SOCKET}"
    return start()


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with (STATE_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _other_sessions() -> list[int]:
    """PIDs of other live sessions using the engine (their lease files under .cache/engine)."""
    alive = []
    for lease in SESSIONS_DIR.glob("*"):
        pid = int(lease.name) if lease.name.isdigit() else -1
        if pid == os.getpid():
            continue
        if pid > 0 and _alive(pid):
            alive.append(pid)
        else:
            lease.unlink(missing_ok=True)  # a session that died without cleaning up
    return alive


@contextlib.contextmanager
def engine_session() -> Iterator[tuple[bool, str]]:
    """ensure_engine() for a block. An engine a session started is stopped when the last
    session using it ends (sessions in one checkout share the engine: a lease file each);
    one started by `python -m tests.images.engine start` is left to `stop`."""
    lease = SESSIONS_DIR / str(os.getpid())
    with _locked():
        SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
        lease.touch()
        running_before = answers()
        ok, why = ensure_engine()
        if ok and not running_before:
            AUTOSTARTED.write_text(f"{os.getpid()}\n")
    try:
        yield ok, why
    finally:
        with _locked():
            lease.unlink(missing_ok=True)
            if ok and AUTOSTARTED.exists() and not _other_sessions():
                stop()
