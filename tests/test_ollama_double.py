"""The Ollama protocol double speaks the documented shapes and its knobs do what they say.

These tests talk to the double directly (no gateway): if the double drifted from Ollama's
documented API, every gateway test built on it would prove less.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ollama_double import DEFAULT_MODELS, VERSION, ThreadedDouble

ROOT = Path(__file__).resolve().parents[1]
MODEL = DEFAULT_MODELS[0]


@pytest.fixture
def double():
    with ThreadedDouble() as running:
        yield running


@pytest.fixture
def http(double):
    with httpx.Client(base_url=double.url, timeout=10) as client:
        yield client


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line]


def sse(text: str) -> list[str]:
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block]


def test_module_docstring_says_it_is_a_stand_in():
    from tests import ollama_double

    assert "NO MODEL RUNS" in ollama_double.__doc__


def test_chat_streams_ndjson_in_the_documented_shape(http):
    response = http.post("/api/chat", json={"model": MODEL, "messages": [
        {"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = ndjson(response.text)
    assert len(lines) == 9
    for line in lines[:-1]:
        assert line["done"] is False
        assert line["message"]["role"] == "assistant"
        assert set(line) >= {"model", "created_at", "message", "done"}
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == 8 and final["prompt_eval_count"] > 0
    assert {"total_duration", "load_duration", "eval_duration"} <= set(final)


def test_generate_non_streaming_is_one_object(http):
    response = http.post("/api/generate", json={"model": MODEL, "prompt": "p", "stream": False})
    body = response.json()
    assert body["done"] is True
    assert body["response"] == "".join(f"tok{i} " for i in range(8))
    assert body["eval_count"] == 8


def test_num_predict_limits_the_tokens(http):
    response = http.post("/api/generate", json={"model": MODEL, "prompt": "p", "stream": False,
                                                "options": {"num_predict": 3}})
    body = response.json()
    assert body["eval_count"] == 3 and body["done_reason"] == "length"


def test_openai_chat_streams_sse_ending_with_done(http):
    response = http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
        "stream_options": {"include_usage": True}})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8


def test_openai_chat_and_completion_whole(http):
    chat = http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).json()
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["content"] == "tok0 tok1 "
    assert chat["choices"][0]["finish_reason"] == "length"
    assert chat["usage"]["completion_tokens"] == 2
    completion = http.post("/v1/completions", json={"model": MODEL, "prompt": "p"}).json()
    assert completion["object"] == "text_completion"
    assert completion["choices"][0]["text"].startswith("tok0")


def test_embeddings_both_shapes(http):
    native = http.post("/api/embed", json={"model": MODEL, "input": ["a", "b"]}).json()
    assert len(native["embeddings"]) == 2 and len(native["embeddings"][0]) == 8
    openai = http.post("/v1/embeddings", json={"model": MODEL, "input": "a"}).json()
    assert openai["object"] == "list"
    assert openai["data"][0]["object"] == "embedding" and openai["data"][0]["index"] == 0


def test_listings(http, double):
    tags = http.get("/api/tags").json()
    assert [m["name"] for m in tags["models"]] == list(DEFAULT_MODELS)
    assert http.get("/api/version").json() == {"version": VERSION}
    models = http.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["owned_by"] == "library"
    assert [m["name"] for m in http.get("/api/ps").json()["models"]] == list(DEFAULT_MODELS)
    double.set(loaded=False)
    assert http.get("/api/ps").json() == {"models": []}


def test_error_status_and_missing_model(http, double):
    double.push(error_status=500)
    response = http.post("/api/chat", json={"model": MODEL})
    assert response.status_code == 500 and "error" in response.json()
    double.set(missing_models=(MODEL,))
    native = http.post("/api/chat", json={"model": MODEL})
    assert native.status_code == 404 and "not found" in native.json()["error"]
    openai = http.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert openai.status_code == 404 and openai.json()["error"]["type"] == "not_found_error"


def test_per_request_header_knobs(http):
    started = time.monotonic()
    response = http.post("/api/generate", json={"model": MODEL, "prompt": "p", "stream": False},
                         headers={"X-Double-Knobs": json.dumps({"ttft": 0.3, "tokens": 2})})
    assert time.monotonic() - started >= 0.3
    assert response.json()["eval_count"] == 2


def test_tokens_are_spaced_by_token_delay_and_ttft(http, double):
    double.push(ttft=0.3, token_delay=0.1, tokens=4)
    arrivals = []
    started = time.monotonic()
    with http.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "p"}) as response:
        for _ in response.iter_raw():
            arrivals.append(time.monotonic() - started)
    assert arrivals[0] >= 0.3
    assert arrivals[-1] >= 0.3 + 0.3  # three gaps of 0.1 s
    # The double marks the record once its last write returns, which may be after the client
    # has read the end of the stream: on a busy machine, give it a moment.
    deadline = time.monotonic() + 5
    while double.requests_to("/api/generate")[-1].outcome == "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    record = double.requests_to("/api/generate")[-1]
    assert record.outcome == "completed" and record.tokens_sent == 4


def test_abrupt_close_breaks_the_stream(http, double):
    double.push(close_after=2, tokens=5)
    with pytest.raises(httpx.RemoteProtocolError), http.stream(
        "POST", "/api/chat", json={"model": MODEL}
    ) as response:
        for _ in response.iter_raw():
            pass
    assert double.requests_to("/api/chat")[-1].outcome == "aborted"


def test_records_a_client_that_goes_away(double):
    double.push(ttft=5)
    sock = socket.create_connection(("127.0.0.1", int(double.url.rsplit(":", 1)[1])))
    body = json.dumps({"model": MODEL, "prompt": "p"}).encode()
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert double.wait_for(lambda: double.requests_to("/api/generate"), 2)
    closed_at = time.monotonic()
    sock.close()
    record = double.wait_for(
        lambda: next((r for r in double.requests_to("/api/generate") if r.client_gone), None), 2)
    assert record is not None
    assert record.client_gone_at - closed_at < 0.5


def test_stall_mid_stream(http, double):
    double.push(stall_after=2, stall_seconds=0.5, tokens=4)
    started = time.monotonic()
    response = http.post("/api/chat", json={"model": MODEL})
    assert time.monotonic() - started >= 0.5
    assert len(ndjson(response.text)) == 5


def test_control_endpoints(http, double):
    assert http.post("/_double/knobs", json={"tokens": 3}).status_code == 200
    assert http.post("/api/chat", json={"model": MODEL, "stream": False}).json()["eval_count"] == 3
    http.post("/_double/push", json={"tokens": 1})
    assert http.post("/api/chat", json={"model": MODEL, "stream": False}).json()["eval_count"] == 1
    records = http.get("/_double/records").json()["records"]
    assert [r["path"] for r in records] == ["/api/chat", "/api/chat"]
    assert "body" not in records[0]
    http.post("/_double/reset")
    assert double.records == [] and double.double.defaults.tokens == 8


def test_runs_as_a_process_on_loopback():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.ollama_double", "--port", str(port), "--tokens", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = process.stdout.readline()
        assert "stand-in" in line and f"127.0.0.1:{port}" in line
        body = httpx.post(f"http://127.0.0.1:{port}/api/generate",
                          json={"model": MODEL, "stream": False}, timeout=5).json()
        assert body["eval_count"] == 2
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


# -- routes and knobs (shapes: ollama/ollama docs/api.md, docs/openai.md) --


def test_show_has_the_documented_fields_and_a_server_path_in_its_modelfile(http):
    body = http.post("/api/show", json={"model": MODEL}).json()
    assert {"modelfile", "parameters", "template", "details", "model_info",
            "capabilities", "license", "modified_at"} <= set(body)
    assert "FROM /root/.ollama/models/blobs/sha256-" in body["modelfile"]
    assert http.post("/api/show", json={"model": "nope:1b"}).status_code == 404


def test_legacy_embeddings_answer_one_vector(http):
    body = http.post("/api/embeddings", json={"model": MODEL, "prompt": "p"}).json()
    assert isinstance(body["embedding"], list) and len(body["embedding"]) == 8


def test_model_retrieve_in_openai_shape(http):
    body = http.get(f"/v1/models/{MODEL}").json()
    assert body == {"id": MODEL, "object": "model", "created": 1761991200,
                    "owned_by": "library"}
    missing = http.get("/v1/models/nope:1b")
    assert missing.status_code == 404 and missing.json()["error"]["message"]


def test_tools_make_the_answer_call_the_first_tool(http):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    ollama = http.post("/api/chat", json={**chat, "stream": False}).json()
    assert ollama["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    openai = http.post("/v1/chat/completions", json=chat).json()
    choice = openai["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                               "arguments": "{}"}


@pytest.mark.parametrize(("knobs", "check"), [
    ({"content_type": "text/html"},
     lambda r: r.headers["content-type"].startswith("text/html")),
    ({"truncate": True}, lambda r: '"done": true' not in r.text and "tok7" in r.text),
    ({"error_after": 2, "error_message": "failed at /usr/lib/ollama/x.so"},
     lambda r: ndjson(r.text)[-1] == {"error": "failed at /usr/lib/ollama/x.so"}),
])
def test_stream_fault_knobs(double, http, knobs, check):
    double.set(**knobs)
    response = http.post("/api/chat", json={"model": MODEL, "messages": []})
    assert response.status_code == 200 and check(response)


def test_redirect_knob(double, http):
    double.set(redirect_to="http://127.0.0.1:9/elsewhere")
    response = http.post("/api/chat", json={"model": MODEL, "messages": []})
    assert response.status_code == 307
    assert response.headers["location"] == "http://127.0.0.1:9/elsewhere"
