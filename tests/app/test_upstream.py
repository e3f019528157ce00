"""Upstream failures as the client sees them: Ollama away, not accepting, silent, stalling,
dying mid-stream, over time, failing (5xx) or refusing (4xx). Timeouts are shortened through
the LOCAL settings; the measured figures are collected for the report."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from app.errors import scrub
from app.upstream import upstream_status_error
from tests.app.harness import AUTH, MODEL, figure, free_port

CHAT = {"messages": [{"role": "user", "content": "hello"}]}


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def events_of(text: str) -> list[str]:
    return [b.removeprefix("data: ") for b in text.split("\n\n") if b.startswith("data: ")]


def test_scrub_removes_paths_and_bounds_messages():
    assert scrub("open /root/.ollama/models/blobs/sha256-1: no such file") == \
        "open <path>: no such file"
    assert scrub("C:\\Users\\me\\model.bin failed") == "<path> failed"
    assert scrub("line\nbreak  and   spaces") == "line break and spaces"
    assert len(scrub("x" * 1000)) == 300


def test_upstream_status_mapping():
    five = upstream_status_error(500, b'{"error":"boom"}')
    assert (five.status, five.message, five.code) == (502, "Ollama failed: boom", "upstream_error")
    openai_shaped = upstream_status_error(404, b'{"error":{"message":"no model"}}')
    assert (openai_shaped.status, openai_shaped.message) == (404, "no model")
    garbage = upstream_status_error(418, b"<html>")
    assert (garbage.status, garbage.message) == (418, "Ollama refused the request (418)")


@pytest.mark.slow
def test_upstream_port_closed_is_503_within_connect_timeout(start):
    server, _ = start(upstream_url=f"http://127.0.0.1:{free_port()}",
                      upstream_connect_timeout_seconds=1.0)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        for path, body in (("/api/chat", CHAT), ("/v1/chat/completions", CHAT)):
            started = time.monotonic()
            response = http.post(path, json=body)
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            error = response.json()["error"]
            message = error["message"] if path.startswith("/v1/") else error
            assert message == "Ollama is unreachable"
            assert elapsed < 1.0 + 0.5
            figure(f"port closed -> 503 ({path})", f"{elapsed * 1000:.1f} ms (limit 1500 ms)")
        assert http.get("/api/tags").status_code == 503


@pytest.mark.slow
def test_upstream_not_accepting_is_503_at_the_connect_timeout(start):
    # A listener whose accept queue is full: the kernel drops further SYNs (a black hole).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=1)
    try:
        server, _ = start(upstream_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
                          upstream_connect_timeout_seconds=1.0)
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
            started = time.monotonic()
            response = http.post("/api/generate", json={"prompt": "p"})
            elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert response.json()["error"] == "Ollama did not accept a connection in time"
        assert 1.0 - 0.05 <= elapsed < 1.0 + 0.5
        figure("connect timeout (1.0 s) -> 503", f"{elapsed * 1000:.1f} ms (limit 1500 ms)")
    finally:
        filler.close()
        listener.close()


@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", CHAT), ("/api/generate", {"prompt": "p"}),
    ("/v1/chat/completions", {**CHAT, "stream": True}),
])
@pytest.mark.slow
def test_silent_upstream_is_504_within_read_timeout(start, double, path, body):
    server, _ = start(upstream_read_timeout_seconds=1.0)
    double.push(ttft=30)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        started = time.monotonic()
        response = http.post(path, json=body)
        elapsed = time.monotonic() - started
    assert response.status_code == 504
    error = response.json()["error"]
    assert (error["code"] if path.startswith("/v1/") else error) in (
        "upstream_timeout", "Ollama sent nothing for 1 s")
    assert 1.0 - 0.05 <= elapsed < 1.0 + 1.0
    figure(f"silent upstream (read timeout 1.0 s) -> 504 ({path})",
           f"{elapsed * 1000:.1f} ms (limit 2000 ms)")
    # The gateway hung up on the silent upstream.
    assert double.wait_for(lambda: double.requests_to(path)[-1].client_gone, 2)


@pytest.mark.slow
def test_non_streaming_answers_may_be_silent_until_done_within_the_total_timeout(start, double):
    # Ollama sends a non-streaming answer whole, at the end: the read timeout (a silence limit
    # for streams) must not cut a generation that is still within the total timeout ...
    server, _ = start(upstream_read_timeout_seconds=0.3, upstream_total_timeout_seconds=1.0)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        double.push(ttft=0.6)
        ok = http.post("/api/generate", json={"prompt": "p", "stream": False})
        assert ok.status_code == 200 and ok.json()["done"] is True
        # ... but the total timeout does.
        double.push(ttft=30)
        started = time.monotonic()
        late = http.post("/v1/chat/completions", json=CHAT)
        elapsed = time.monotonic() - started
    assert late.status_code == 504
    assert late.json()["error"]["message"] == "Ollama did not finish within 1 s"
    assert 1.0 - 0.05 <= elapsed < 1.0 + 1.0
    figure("silent non-streaming upstream (total timeout 1.0 s) -> 504",
           f"{elapsed * 1000:.1f} ms (limit 2000 ms)")


@pytest.mark.slow
def test_stall_mid_stream_ends_with_a_terminal_error(start, double):
    server, _ = start(upstream_read_timeout_seconds=1.0)
    double.push(tokens=5, stall_after=2)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        started = time.monotonic()
        response = http.post("/api/chat", json=CHAT)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        lines = lines_of(response.text)
        assert [line.get("message", {}).get("content") for line in lines[:2]] == ["tok0 ",
                                                                                    "tok1 "]
        assert lines[-1]["error"] == "Ollama sent nothing for 1 s" and len(lines) == 3
        assert lines[-1]["request_id"] == response.headers["x-request-id"]
        assert elapsed < 1.0 + 1.0
        figure("stall mid-stream (read timeout 1.0 s) -> terminal error",
               f"{elapsed * 1000:.1f} ms")
        assert http.post("/api/chat", json=CHAT).status_code == 200


@pytest.mark.parametrize("path", ["/api/generate", "/v1/completions"])
@pytest.mark.slow
def test_upstream_dying_mid_stream_gives_a_terminal_error_and_no_hang(client, double, path):
    double.push(tokens=10, token_delay=0.05, close_after=3)
    body = {"prompt": "p", "stream": True}
    started = time.monotonic()
    response = client.post(path, json=body)  # a complete, well-formed chunked response
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    if path.startswith("/api/"):
        lines = lines_of(response.text)
        assert [line["response"] for line in lines[:3]] == ["tok0 ", "tok1 ", "tok2 "]
        assert lines[-1]["error"] == "Ollama closed the connection unexpectedly"
    else:
        events = events_of(response.text)
        assert len(events) == 4
        error = json.loads(events[-1])["error"]
        assert error["code"] == "upstream_error" and error["type"] == "api_error"
    assert elapsed < 2
    figure(f"upstream dies mid-stream -> terminal error ({path})", f"{elapsed * 1000:.1f} ms")
    follow_up = client.post(path, json={**body, "stream": False})
    assert follow_up.status_code == 200


@pytest.mark.slow
def test_total_timeout_cuts_a_long_stream(start, double):
    server, _ = start(upstream_total_timeout_seconds=1.0)
    double.push(tokens=50, token_delay=0.1)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        started = time.monotonic()
        lines = lines_of(http.post("/api/generate", json={"prompt": "p"}).text)
        elapsed = time.monotonic() - started
    assert lines[-1]["error"] == "Ollama did not finish within 1 s"
    assert 5 <= len(lines) <= 13 and elapsed < 2


@pytest.mark.slow
def test_upstream_5xx_is_502_without_paths(client, double):
    double.push(error_status=500,
                error_message="llama runner crashed: open /root/.ollama/models/blobs/x: EIO")
    response = client.post("/api/chat", json={**CHAT, "stream": False})
    assert response.status_code == 502
    message = response.json()["error"]
    assert message == "Ollama failed: llama runner crashed: open <path>: EIO"
    double.push(error_status=503)
    openai = client.post("/v1/chat/completions", json=CHAT)
    assert openai.status_code == 502
    assert openai.json()["error"]["type"] == "api_error"
    assert openai.json()["error"]["code"] == "upstream_error"


@pytest.mark.slow
def test_upstream_4xx_passes_through(client, double):
    double.set(missing_models=(MODEL,))
    native = client.post("/api/generate", json={"prompt": "p"})
    assert native.status_code == 404
    assert native.json()["error"] == f'model "{MODEL}" not found, try pulling it first'
    openai = client.post("/v1/completions", json={"prompt": "p"})
    assert openai.status_code == 404
    assert openai.json()["error"]["message"] == f'model "{MODEL}" not found, try pulling it first'
    double.set(missing_models=())
    double.push(error_status=400, error_message="invalid format")
    assert client.post("/api/generate", json={"prompt": "p"}).status_code == 400
