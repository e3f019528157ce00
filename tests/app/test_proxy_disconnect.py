"""A client that goes away closes the upstream request (the GPU stops), whenever it leaves.

The client here is a raw socket, closed at a chosen moment; the Ollama double records when its
own connection from the gateway closed.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.app.harness import KEY, figure

pytestmark = pytest.mark.slow

PROMPT = {"prompt": "hello"}


def send_request(port: int, path: str, body: dict) -> socket.socket:
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
    )
    return sock


def read_until(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data and time.monotonic() < deadline:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return data


def gone_within(double, path: str, closed_at: float, limit: float = 1.0) -> float:
    record = double.wait_for(
        lambda: next((r for r in double.requests_to(path) if r.client_gone), None), limit + 1)
    assert record is not None, f"the double never saw {path} closed"
    assert record.tokens_sent < 50  # it stopped generating, far from the end
    return record.client_gone_at - closed_at


def wait_slot_free(app, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while app.state.gateway.limiter.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.gateway.limiter.active == 0


@pytest.mark.parametrize(("path", "body", "marker"), [
    ("/api/generate", PROMPT, b"tok0"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True},
     b"tok0"),
])
def test_disconnect_after_the_first_chunk(start, double, path, body, marker):
    server, app = start()
    double.set(tokens=100, token_delay=0.05)
    sock = send_request(server.port, path, body)
    assert marker in read_until(sock, marker)
    closed_at = time.monotonic()
    sock.close()
    delay = gone_within(double, path, closed_at)
    assert delay < 1.0
    figure(f"client disconnect after first chunk -> upstream closed ({path})",
           f"{delay * 1000:.1f} ms (limit 1000 ms)")
    wait_slot_free(app)


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "non-streaming"])
def test_disconnect_during_time_to_first_token(start, double, stream):
    server, app = start()
    double.set(ttft=10, tokens=100)
    sock = send_request(server.port, "/api/generate", {**PROMPT, "stream": stream})
    assert double.wait_for(lambda: double.requests_to("/api/generate"), 2)
    time.sleep(0.2)
    closed_at = time.monotonic()
    sock.close()
    delay = gone_within(double, "/api/generate", closed_at)
    assert delay < 1.0
    label = "streaming, during TTFT" if stream else "non-streaming"
    figure(f"client disconnect ({label}) -> upstream closed",
           f"{delay * 1000:.1f} ms (limit 1000 ms)")
    wait_slot_free(app)


def test_disconnect_is_logged(start, double, capfd):
    server, _ = start()
    double.set(ttft=10)
    sock = send_request(server.port, "/api/chat", {"messages": []})
    assert double.wait_for(lambda: double.requests_to("/api/chat"), 2)
    sock.close()
    assert double.wait_for(lambda: double.requests_to("/api/chat")[-1].client_gone, 2)
    server.stop()
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()
             if '"gateway.access"' in line]
    chat = [line for line in lines if line["route"] == "/api/chat"]
    assert chat and chat[-1]["disconnected"] is True
    assert chat[-1]["reason"] == "client_disconnected"


def test_a_queued_request_that_leaves_gives_up_its_place(start, double):
    server, app = start(max_concurrency=1, queue_timeout_seconds=5.0)
    double.set(tokens=20, token_delay=0.05)
    first = send_request(server.port, "/api/generate", PROMPT)
    assert b"tok0" in read_until(first, b"tok0")
    queued = send_request(server.port, "/api/generate", PROMPT)
    time.sleep(0.2)
    queued.close()
    time.sleep(0.2)
    assert app.state.gateway.limiter.waiting == 0
    first.close()
    wait_slot_free(app)
    assert len(double.requests_to("/api/generate")) == 1  # the queued one never reached Ollama
