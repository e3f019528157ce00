"""Test harness: the gateway under a real uvicorn server on 127.0.0.1, in a background thread.

The server runs as production does (uvicorn, httptools, uvloop, no Server header, lifespan on)
so that streaming, disconnects and timeouts are real socket behaviour, not an in-process
transport's approximation.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
import uvloop

from app.factory import create_app
from app.settings import load_settings

# Measured fault figures, printed at the end of the run (see conftest.pytest_terminal_summary).
FIGURES: dict[str, str] = {}


def figure(name: str, value: str) -> None:
    FIGURES[name] = value


KEY = "test-key-0123456789abcdef"
OTHER_KEY = "test-key-rotated-fedcba9876543210"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "llama3.2:1b"
MODELS = f"{MODEL},qwen2.5:0.5b"


def gateway_settings(upstream_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "ollama_base_url": upstream_url,
        "api_keys": f"{KEY},{OTHER_KEY}",
        "models": MODELS,
        "metric_interval_seconds": 3600.0,
    }
    values.update(overrides)
    return load_settings(**values)


class ServerThread:
    """uvicorn.Server for one app, on a free 127.0.0.1 port, in its own thread and loop."""

    def __init__(self, app: Any, graceful_seconds: float | None = 5.0) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.config = uvicorn.Config(
            app,
            lifespan="on",
            server_header=False,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=graceful_seconds,
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, daemon=True, name="gateway-server")
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # surfaced by start()/stop()
            self.error = exc

    def start(self, timeout: float = 10.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"gateway server did not start: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("gateway server did not start in time")
            time.sleep(0.01)
        return self

    def call(self, func: Any, *args: Any) -> None:
        """Run a plain function on the server's event loop (e.g. gateway.drain.begin)."""
        loop = self.server_loop()
        done = threading.Event()

        def run() -> None:
            try:
                func(*args)
            finally:
                done.set()

        loop.call_soon_threadsafe(run)
        done.wait(5)

    def server_loop(self) -> asyncio.AbstractEventLoop:
        for server in self.server.servers:
            return server.get_loop()
        raise RuntimeError("server not running")

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
        if self.thread.is_alive():
            raise TimeoutError("gateway server did not stop in time")


def start_gateway(upstream_url: str, graceful_seconds: float = 5.0, **overrides: Any
                  ) -> tuple[ServerThread, Any]:
    app = create_app(gateway_settings(upstream_url, **overrides))
    return ServerThread(app, graceful_seconds).start(), app


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class InProcess:
    """A sync client for an app in this process (httpx.ASGITransport, one event loop).

    No lifespan and no socket: for what happens before any upstream call (auth, limits,
    routing, headers). Streaming and disconnects are tested against ServerThread instead.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._runner = asyncio.Runner()

        async def make() -> httpx.AsyncClient:
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver")

        self._client = self._runner.run(make())

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._runner.run(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> Any:
        return self.request("OPTIONS", url, **kwargs)

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        gateway = getattr(self.app.state, "gateway", None)
        if gateway is not None:
            self._runner.run(gateway.upstream.close())
        self._runner.close()

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
