"""One JSON line per request, with a request id, and never a key or a prompt or a completion.

The canary run drives every kind of request (streaming, not, refused, failing, disconnected)
with a canary key and a canary prompt, and searches everything the process wrote: stdout,
stderr and every log record of every logger at DEBUG.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import pytest

from tests.app.harness import KEY

pytestmark = pytest.mark.slow

CANARY_KEY = "canaryKEY7f3a9c2e51d84b6a"
CANARY_PROMPT = "canary-prompt-b7e2c4a19d"


def test_canary_key_and_prompt_never_appear_in_any_output(start, double, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    server, _ = start(api_keys=f"{KEY},{CANARY_KEY}", upstream_read_timeout_seconds=0.5)
    auth = {"Authorization": f"Bearer {CANARY_KEY}"}
    prompt = f"{CANARY_PROMPT} please"
    chat = {"messages": [{"role": "user", "content": prompt}]}
    sent = 0
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as http:

        def call(method: str, path: str, **kwargs) -> httpx.Response:
            nonlocal sent
            sent += 1
            return http.request(method, path, **kwargs)

        double.set(tokens=3)  # completions are "tok0 tok1 tok2": searched for below
        statuses = [
            call("POST", "/api/chat", json=chat).status_code,
            call("POST", "/api/chat", json={**chat, "stream": False}).status_code,
            call("POST", "/api/generate", json={"prompt": prompt}).status_code,
            call("POST", "/v1/chat/completions", json={**chat, "stream": True}).status_code,
            call("POST", "/v1/completions", json={"prompt": prompt}).status_code,
            call("POST", "/api/embed", json={"input": [prompt]}).status_code,
            call("POST", "/v1/embeddings", json={"input": prompt}).status_code,
            call("GET", "/api/tags").status_code,
            call("POST", "/api/generate", json={"prompt": prompt * 20000}).status_code,
            call("POST", "/api/chat", json={"model": CANARY_PROMPT, **chat}).status_code,
            call("POST", "/api/chat", content=f"{{{CANARY_PROMPT}".encode()).status_code,
            call("POST", "/api/chat", json={"messages": [{"content": prompt}]}).status_code,
            call("GET", f"/api/tags?key={CANARY_KEY}", headers={"Authorization": ""}
                 ).status_code,
            call("GET", "/api/tags", headers={"Authorization": f"Bearer {CANARY_KEY}x"}
                 ).status_code,
            call("POST", f"/api/pull?{CANARY_KEY}", json={"model": CANARY_PROMPT}).status_code,
        ]
        double.push(error_status=500, error_message=f"upstream says {CANARY_PROMPT}")
        statuses.append(call("POST", "/api/chat", json=chat).status_code)
        double.push(ttft=5)
        statuses.append(call("POST", "/api/chat", json=chat).status_code)  # read timeout
        double.push(close_after=1)
        statuses.append(call("POST", "/api/generate", json={"prompt": prompt}).status_code)
    # and one that goes away mid-stream
    double.set(tokens=100, token_delay=0.05)
    body = json.dumps({"prompt": prompt}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer "
                     + CANARY_KEY.encode() + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert b"tok0" in sock.recv(65536)
    sent += 1
    double.wait_for(lambda: double.requests_to("/api/generate")[-1].client_gone, 2)
    time.sleep(0.1)
    server.stop()

    assert statuses == [200, 200, 200, 200, 200, 200, 200, 200, 400, 404, 400, 400, 401, 401,
                        404, 502, 504, 200]
    captured = capfd.readouterr()
    # Every record but the test client's own (httpx logs the URLs it requests, query included).
    records = "\n".join(
        f"{r.name} {r.getMessage()} {getattr(r, 'fields', '')} {r.exc_text or ''}"
        for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert any(r.name.startswith("gateway") for r in caplog.records) or captured.out
    everything = captured.out + captured.err + records
    assert CANARY_KEY not in everything
    assert CANARY_PROMPT not in everything
    assert "tok0" not in everything and "tok1" not in everything  # no completion text

    access = [json.loads(line) for line in captured.out.splitlines()
              if '"logger":"gateway.access"' in line]
    assert len(access) == sent
    for line in access:
        assert len(line["request_id"]) == 32
        assert line["status"] is not None
        assert set(line) >= {"route", "model", "duration_ms", "ttft_ms", "prompt_tokens",
                             "output_tokens", "disconnected", "key_id"}
    keyed = [line for line in access if line["key_id"]]
    assert keyed and all(len(line["key_id"]) == 12 for line in keyed)
    assert any(line["disconnected"] for line in access)
    streamed = next(line for line in access if line["route"] == "/api/chat"
                    and line["status"] == 200)
    assert streamed["output_tokens"] == 3 and streamed["prompt_tokens"] > 0
    assert streamed["model"] == "llama3.2:1b"


def test_every_line_on_stdout_is_json(start, double, capfd):
    server, _ = start()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.get("/healthz", headers={"X-Request-ID": "mine-42"})
        http.get("/api/tags")
    server.stop()
    out = capfd.readouterr().out
    parsed = [json.loads(line) for line in out.splitlines() if line.strip()]
    access = [p for p in parsed if p.get("logger") == "gateway.access"]
    assert [a["request_id"] for a in access][0] == "mine-42"
    assert [a["status"] for a in access] == [200, 401]
    assert [a["route"] for a in access] == ["/healthz", "/api/tags"]
