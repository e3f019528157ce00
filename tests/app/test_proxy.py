"""Every proxied route, streaming and not, through a real gateway server to the Ollama double:
bytes pass through as they arrive, listings are filtered, OpenAI streams are pinged."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.app.harness import AUTH, MODEL

pytestmark = pytest.mark.slow

CHAT = {"messages": [{"role": "user", "content": "hello"}]}
STREAMING = [
    ("/api/chat", CHAT, "application/x-ndjson"),
    ("/api/generate", {"prompt": "hello"}, "application/x-ndjson"),
    ("/v1/chat/completions", {**CHAT, "stream": True}, "text/event-stream"),
    ("/v1/completions", {"prompt": "hello", "stream": True}, "text/event-stream"),
]


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def events_of(text: str) -> list[str]:
    return [b.removeprefix("data: ") for b in text.split("\n\n") if b.startswith("data: ")]


def check_complete(path: str, text: str, tokens: int) -> None:
    if path.startswith("/api/"):
        lines = lines_of(text)
        assert len(lines) == tokens + 1 and lines[-1]["done"] is True
    else:
        events = events_of(text)
        assert events[-1] == "[DONE]" and len(events) == tokens + 2


@pytest.mark.parametrize(("path", "body", "media"), STREAMING, ids=[s[0] for s in STREAMING])
def test_streaming_passes_bytes_through_as_they_arrive(client, double, path, body, media):
    double.set(tokens=10, token_delay=0.1)
    arrivals: list[float] = []
    sent_when_first_arrived = None
    text = b""
    started = time.monotonic()
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == media
        for chunk in response.iter_raw():
            if not arrivals:
                sent_when_first_arrived = double.requests_to(path)[-1].tokens_sent
            arrivals.append(time.monotonic() - started)
            text += chunk
    record = double.requests_to(path)[-1]
    # The first chunk reached the client while the double had produced 1-2 of 10 tokens.
    assert sent_when_first_arrived is not None and sent_when_first_arrived < 5
    assert record.finished is not None
    assert arrivals[0] < arrivals[-1] - 0.5
    assert len(arrivals) >= 5
    check_complete(path, text.decode(), 10)


@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", {**CHAT, "stream": False}),
    ("/api/generate", {"prompt": "hello", "stream": False}),
    ("/v1/chat/completions", CHAT),
    ("/v1/completions", {"prompt": "hello"}),
])
def test_non_streaming_routes_return_one_json_object(client, double, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    if path == "/api/chat":
        assert data["message"]["content"].startswith("tok0") and data["done"] is True
    elif path == "/api/generate":
        assert data["response"].startswith("tok0")
    elif path == "/v1/chat/completions":
        assert data["object"] == "chat.completion"
        assert data["choices"][0]["message"]["content"].startswith("tok0")
    else:
        assert data["object"] == "text_completion" and data["choices"][0]["text"]
    assert double.requests_to(path)[-1].stream is False


def test_embeddings(client):
    native = client.post("/api/embed", json={"input": ["a", "b"]})
    assert native.status_code == 200 and len(native.json()["embeddings"]) == 2
    openai = client.post("/v1/embeddings", json={"input": "a", "model": MODEL})
    assert openai.status_code == 200 and openai.json()["data"][0]["object"] == "embedding"


def test_listings_show_only_allowed_models(client, double):
    assert "notallowed:latest" in double.double.defaults.models
    tags = client.get("/api/tags").json()
    assert [m["name"] for m in tags["models"]] == ["llama3.2:1b", "qwen2.5:0.5b"]
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["llama3.2:1b", "qwen2.5:0.5b"]
    assert client.get("/api/version").json() == {"version": "0.12.6"}


def test_sse_pings_during_silences_but_never_before_the_first_byte(start, double):
    server, _ = start(stream_ping_seconds=0.2)
    double.push(ttft=0.7, tokens=3, stall_after=1, stall_seconds=0.9)
    chunks = []
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http, http.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
        for chunk in response.iter_raw():
            chunks.append(chunk)
    text = b"".join(chunks).decode()
    assert chunks[0].startswith(b"data: ")  # 0.7 s of silence before it, and no ping
    first_ping = text.index(": ping\n\n")
    assert text.index("tok0") < first_ping < text.index("tok1")
    assert text.count(": ping\n\n") >= 3
    assert "\n\n: ping" in text  # only between two events
    check_complete("/v1/chat/completions", text.replace(": ping\n\n", ""), 3)


def test_ndjson_streams_are_not_pinged(start, double):
    server, _ = start(stream_ping_seconds=0.1)
    double.push(tokens=2, stall_after=1, stall_seconds=0.5)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        text = http.post("/api/chat", json=CHAT).text
    assert "ping" not in text
    check_complete("/api/chat", text, 2)
