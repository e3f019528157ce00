"""The engine tests' private Docker engine and the stand-in Python base: the one entry point.

How a test uses it (tests/images/conftest.py has an `engine` fixture that starts the engine when
none answers, skips with the reason where none can start, and stops what it started):

    from tests.images import engine
    ok, why = engine.ensure_engine()           # (True, "") or (False, "why not"); starts one
    engine.docker("run", "--rm", image, "id")  # the client on the private socket; raises
                                               # EngineCommandError (an AssertionError) on failure
    engine.inspect("container", name)          # `docker inspect`, parsed
    subprocess.run(["docker-compose", ...], env=engine.engine_env(), ...)  # DOCKER_HOST set
    engine.build_image(tag, context, dockerfile=path, build_args={...})  # BuildKit, host network
    base = engine.standin_python_base()        # app/Dockerfile's FROM name, tagged on this
                                               # engine only to a STAND-IN (tests/images/standin.py)
    engine.STANDIN_LABEL                       # the label every image built on it inherits

From make: `python -m tests.images.engine start|stop|status`, or `run -- CMD ...` (start when
none answers, run CMD, stop what it started, also on failure; a loud line when it cannot start).

The lifecycle and its flags are in tests/images/dockerd.py; the stand-in's recipe and cache in
tests/images/standin.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.images import standin
from tests.images.dockerd import (
    DATA_ROOT,
    DOCKER_HOST,
    REPO,
    SOCKET,
    STATE_DIR,
    STOP_TIMEOUT,
    UNAVAILABLE_ENV,
    EngineCommandError,
    answers,
    api,
    build_image,
    docker,
    docker_client,
    engine_env,
    engine_session,
    ensure_engine,
    inspect,
    start,
    stop,
)
from tests.images.standin import STANDIN_LABEL

__all__ = ["DATA_ROOT", "DOCKER_HOST", "REPO", "SOCKET", "STANDIN_LABEL", "EngineCommandError",
           "answers", "api", "build_image", "docker", "docker_client", "engine_env", "engine_session",
           "ensure_engine", "inspect", "standin_python_base", "start", "stop"]


def standin_python_base() -> str:
    """Build (once, cached by content) the stand-in base; return app/Dockerfile's FROM name,
    which now names it on the private engine."""
    return standin.python_base()


def loud(message: str) -> None:
    bar = "!" * 100
    print(f"\n{bar}\n!!! {message}\n{bar}\n", file=sys.stderr, flush=True)


def prepare_in_background() -> subprocess.Popen[bytes]:
    """Build the stand-in base while the tests that need no engine run (debootstrap is mostly
    download and dpkg); the engine tests' fixture waits for it on the same lock."""
    log = STATE_DIR / "prepare.log"
    with log.open("wb") as output:
        return subprocess.Popen([sys.executable, "-m", "tests.images.engine", "prepare"],
                                stdin=subprocess.DEVNULL, stdout=output,
                                stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)


def _end_preparation(preparation: subprocess.Popen[bytes] | None) -> None:
    if preparation is None or preparation.poll() is not None:
        return
    preparation.terminate()  # `prepare` turns SIGTERM into SystemExit: its build cleans up
    try:
        preparation.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        preparation.kill()
        preparation.wait()


def run(command: list[str]) -> int:
    """Run command with the engine up; stop the engine afterwards if this call started it."""
    with engine_session() as (ok, why):
        env = dict(os.environ)
        preparation = prepare_in_background() if ok else None
        if not ok:
            env[UNAVAILABLE_ENV] = why
            loud(f"ENGINE TESTS WILL SKIP: the private Docker engine did not start: {why}")
        try:
            return _wait_for(subprocess.Popen(command, env=env), ok, why)
        finally:
            _end_preparation(preparation)


def _wait_for(child: subprocess.Popen[bytes], ok: bool, why: str) -> int:
    """The child's exit status; SIGTERM is passed on to it, Ctrl-C (which it got too) waited out."""
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not ok:
        loud(f"ENGINE TESTS SKIPPED: the private Docker engine did not start: {why}")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = argv[0] if argv else ""
    if verb == "start":
        ok, why = start()
        print(f"engine: {'up on ' + DOCKER_HOST if ok else 'not started: ' + why}")
        return 0 if ok else 1
    if verb == "stop":
        ok, why = stop()
        print(f"engine: stopped{' (' + why + ')' if why else ''}")
        return 0 if ok else 1
    if verb == "status":
        up = answers()
        print(f"engine: {'up' if up else 'down'} ({DOCKER_HOST}, data root {DATA_ROOT})")
        return 0 if up else 3
    if verb == "prepare":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        print(f"stand-in base: {standin_python_base()} ({standin.description()})", flush=True)
        return 0
    if verb == "run" and argv[1:2] == ["--"] and argv[2:]:
        return run(argv[2:])
    print("usage: python -m tests.images.engine start|stop|status|prepare|run -- COMMAND...",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
