"""Draining: readiness drops, open streams finish within the grace period, late ones are cut
with a terminal error; and the same through a real `uvicorn app.main:app` process and SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.drain import Drain
from tests.app.harness import AUTH, KEY, MODELS, figure, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class StreamReader(threading.Thread):
    """Reads one streaming response to its end in the background."""

    def __init__(self, url: str, path: str, body: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.path, self.body = url, path, body
        self.first_chunk = threading.Event()
        self.text = ""
        self.status: int | None = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, headers=AUTH, timeout=30) as http, \
                    http.stream("POST", self.path, json=self.body) as response:
                self.status = response.status_code
                for chunk in response.iter_raw():
                    self.text += chunk.decode()
                    self.first_chunk.set()
        except BaseException as exc:  # asserted by the test
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.first_chunk.set()


def test_signal_hook_chains_in_front_of_the_servers_handler():
    calls: list[int] = []

    def server_handler(signum, frame) -> None:
        calls.append(signum)

    async def scenario() -> Drain:
        drain = Drain(grace_seconds=10)
        drain.install_signal_hooks()
        assert signal.getsignal(signal.SIGTERM) is not server_handler
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            if drain.draining:
                break
            await asyncio.sleep(0.01)
        drain.remove_signal_hooks()
        drain.close()
        return drain

    original = signal.signal(signal.SIGTERM, server_handler)
    try:
        drain = asyncio.run(scenario())
        assert drain.draining and calls == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is server_handler
    finally:
        signal.signal(signal.SIGTERM, original)


def test_no_hook_where_nobody_handles_the_signal():
    async def scenario() -> None:
        drain = Drain(grace_seconds=10)
        drain.install_signal_hooks()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        drain.remove_signal_hooks()

    original = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        asyncio.run(scenario())
    finally:
        signal.signal(signal.SIGTERM, original)


def test_draining_turns_readiness_off_and_refuses_new_work(start, double):
    server, app = start()
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        assert http.get("/readyz").status_code == 200
        server.call(app.state.gateway.drain.begin)
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        refused = http.post("/api/chat", json=CHAT)
        assert refused.status_code == 503
        assert refused.json()["error"] == "the gateway is shutting down"
        assert refused.headers["connection"] == "close"
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", CHAT), ("/v1/chat/completions", {**CHAT, "stream": True})])
def test_streams_open_at_the_end_of_the_grace_period_get_a_terminal_error(
        start, double, path, body):
    server, app = start(graceful_shutdown_seconds=1.0)
    double.set(tokens=200, token_delay=0.05)
    reader = StreamReader(server.url, path, body)
    reader.start()
    assert reader.first_chunk.wait(5)
    began = time.monotonic()
    server.call(app.state.gateway.drain.begin)
    reader.join(5)
    assert reader.error is None, reader.error  # a complete, well-formed chunked body
    cut_after = reader.ended_at - began
    assert 0.7 <= cut_after < 1.0  # 1.0 s grace minus a 0.2 s margin
    if path.startswith("/api/"):
        last = lines_of(reader.text)[-1]
        assert last["error"].startswith("the gateway is shutting down")
    else:
        last = reader.text.strip().split("\n\n")[-1]
        assert json.loads(last.removeprefix("data: "))["error"]["code"] == "shutting_down"
    assert double.wait_for(lambda: double.requests_to(path)[-1].client_gone, 2)
    figure(f"in-process drain, grace 1.0 s: open stream cut with terminal error ({path})",
           f"after {cut_after * 1000:.0f} ms")


# -- a real uvicorn process and SIGTERM --------------------------------------------------------


def start_uvicorn(upstream: str, grace: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({
        "OLLAMA_BASE_URL": upstream,
        "GATEWAY_API_KEYS": KEY,
        "GATEWAY_MODELS": MODELS,
        "GATEWAY_GRACEFUL_SHUTDOWN_SECONDS": str(grace),
        "PYTHONPATH": str(ROOT),
    })
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--timeout-graceful-shutdown", str(grace),
         "--no-server-header", "--no-access-log"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"uvicorn did not come up: {process.communicate(timeout=5)}")


def sigterm_and_wait(process: subprocess.Popen, timeout: float) -> tuple[int, float]:
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise AssertionError("uvicorn did not stop within the grace period") from None
    return code, time.monotonic() - sent


def new_request_refused(url: str, after: float) -> bool:
    time.sleep(after)  # uvicorn notices the signal on its next 0.1 s tick
    try:
        httpx.get(url + "/healthz", timeout=1)
    except httpx.TransportError:
        return True
    return False


def test_sigterm_lets_three_streams_finish_then_exits(double):
    grace = 5
    double.set(tokens=20, token_delay=0.1)  # about 2 s per stream
    process, url = start_uvicorn(double.url, grace)
    readers = [StreamReader(url, "/api/generate", {"prompt": "p"}),
               StreamReader(url, "/v1/completions", {"prompt": "p", "stream": True}),
               StreamReader(url, "/api/chat", CHAT)]
    for reader in readers:
        reader.start()
    for reader in readers:
        assert reader.first_chunk.wait(5)
    refused_holder: list[bool] = []
    checker = threading.Thread(target=lambda: refused_holder.append(new_request_refused(url, 0.5)))
    checker.start()
    code, took = sigterm_and_wait(process, grace + 3)
    checker.join(5)
    out, err = process.communicate(timeout=5)
    assert refused_holder == [True], "a new request was served after SIGTERM"
    for reader in readers:
        reader.join(5)
        assert reader.error is None and reader.status == 200
        assert reader.text.count("tok") == 20, reader.path
        assert "error" not in reader.text
    assert lines_of(readers[0].text)[-1]["done"] is True
    assert readers[1].text.rstrip().endswith("data: [DONE]")
    # uvicorn 0.54 re-raises the captured SIGTERM after its graceful shutdown, with the default
    # handler restored: the process ends by the signal (143 in a shell / ECS, -15 here).
    assert code == -signal.SIGTERM, (code, err[-2000:])
    assert took < grace
    figure("SIGTERM with 3 streams (about 2 s each) in flight, grace 5 s",
           f"streams complete, new connections refused, exit {code} (143) after "
           f"{took * 1000:.0f} ms")
    assert '"msg":"draining"' in out


def test_sigterm_cuts_streams_at_the_end_of_the_grace_period(double):
    grace = 2
    double.set(tokens=400, token_delay=0.05)  # 20 s: far longer than the grace period
    process, url = start_uvicorn(double.url, grace)
    readers = [StreamReader(url, "/api/generate", {"prompt": "p"}),
               StreamReader(url, "/v1/chat/completions", {**CHAT, "stream": True})]
    for reader in readers:
        reader.start()
    for reader in readers:
        assert reader.first_chunk.wait(5)
    code, took = sigterm_and_wait(process, grace + 3)
    process.communicate(timeout=5)
    for reader in readers:
        reader.join(5)
        assert reader.error is None, reader.error  # ended cleanly, not a broken body
    assert lines_of(readers[0].text)[-1]["error"].startswith("the gateway is shutting down")
    last_event = readers[1].text.strip().split("\n\n")[-1]
    assert json.loads(last_event.removeprefix("data: "))["error"]["code"] == "shutting_down"
    assert code == -signal.SIGTERM
    assert took < grace + 1
    for path in ("/api/generate", "/v1/chat/completions"):
        assert double.wait_for(lambda p=path: double.requests_to(p)[-1].client_gone, 2)
    figure("SIGTERM with 2 long streams, grace 2 s",
           f"terminal error event in both, upstream closed, exit {code} (143) after "
           f"{took * 1000:.0f} ms")
