"""A streaming answer is checked, not relayed blind (issue 14, item 4).

Before the first byte: the upstream status must be 2xx and the media type a stream's, else 502
in the route's shape. After it: a stream that ends without its end marker gets a terminal error
line/event; Ollama's own in-stream error line reaches the client scrubbed and with the request
id. The upstream is the Ollama protocol double, with its stream-fault knobs.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
ROUTES = [("/api/chat", CHAT, False), ("/v1/chat/completions", {**CHAT, "stream": True}, True)]
SERVER_PATH = "/usr/lib/ollama/cuda_v12/libggml-cuda.so"


def events(text: str, openai: bool) -> list:
    if openai:
        blocks = [b.removeprefix("data: ") for b in text.split("\n\n") if b.startswith("data: ")]
        return [b if b == "[DONE]" else json.loads(b) for b in blocks]
    return [json.loads(line) for line in text.splitlines() if line]


@pytest.mark.parametrize(("path", "body", "openai"), ROUTES)
@pytest.mark.parametrize("knobs", [
    {"content_type": "text/html; charset=utf-8"},
    {"redirect_to": "http://127.0.0.1:9/login"},
], ids=["html", "redirect"])
def test_not_a_stream_before_the_first_byte_is_502(client, double, path, body, openai, knobs):
    double.set(**knobs)
    response = client.post(path, json=body)
    assert response.status_code == 502, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["message"] if openai else error).startswith("Ollama answered")
    assert "127.0.0.1:9" not in response.text


@pytest.mark.parametrize(("path", "body", "openai"), ROUTES)
def test_a_stream_cut_short_ends_with_a_terminal_error(client, double, path, body, openai):
    double.set(truncate=True, tokens=3)
    response = client.post(path, json=body, headers={"X-Request-ID": "trace-trunc"})
    assert response.status_code == 200
    items = events(response.text, openai)
    assert "[DONE]" not in items
    last = items[-1]
    assert (last["error"]["request_id"] if openai else last["request_id"]) == "trace-trunc"
    message = last["error"]["message"] if openai else last["error"]
    assert "before its final message" in message
    assert len(items) == 4  # three tokens, then the error


@pytest.mark.parametrize(("path", "body", "openai"), ROUTES)
def test_ollamas_in_stream_error_is_scrubbed_and_carries_the_request_id(client, double, path,
                                                                       body, openai):
    double.set(error_after=2, error_message=f"CUDA error at {SERVER_PATH}:88")
    response = client.post(path, json=body, headers={"X-Request-ID": "trace-err"})
    assert response.status_code == 200
    assert SERVER_PATH not in response.text and "/usr/lib" not in response.text
    items = events(response.text, openai)
    errors = [i for i in items if isinstance(i, dict) and "error" in i]
    assert len(errors) == 1, "one error line: Ollama's, rewritten (no second one for the end)"
    error = errors[0]
    assert items[-1] is error
    if openai:
        assert error["error"]["request_id"] == "trace-err"
        assert error["error"]["message"].startswith("Ollama failed: CUDA error at <path>")
    else:
        assert error == {"error": "Ollama failed: CUDA error at <path>:88",
                         "request_id": "trace-err"}


@pytest.mark.parametrize(("path", "body", "openai"), ROUTES)
def test_a_whole_stream_is_relayed_unchanged(client, double, path, body, openai):
    double.set(tokens=5)
    response = client.post(path, json=body)
    items = events(response.text, openai)
    assert not [i for i in items if isinstance(i, dict) and "error" in i]
    assert items[-1] == "[DONE]" if openai else items[-1]["done"] is True
