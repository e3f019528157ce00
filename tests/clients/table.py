"""Client compatibility: ONE table drives the tests (tests/clients/test_clients.py) and docs/clients.md.

Each row is a call a user makes with a real client library (pinned in requirements-dev.txt),
through the gateway, with the Ollama protocol double (tests/ollama_double.py) as the upstream:
NO MODEL RUNS, the answers are made-up tokens, so the table says what the gateway passes and
refuses, not what a model answers. `run(env)` makes the call and asserts the result the row
states (a refusal asserts the client's own error type and status). Client libraries are
imported inside the calls, so rendering the table needs none of them.
The docs show the table as the generated section "client-compatibility" of docs/clients.md
(`make generate` writes it; `generate.py --check` fails when it is stale).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "llama3.2:1b"
EMBED_MODEL = "qwen2.5:0.5b"
NOT_ALLOWED = "notallowed:latest"  # the double has it; the gateway's allowlist does not
TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
HI = [{"role": "user", "content": "hi"}]
ADMIN_REASON = ("model management is never routed through the gateway (the same 404 as any "
                "unknown path); models are baked into the Ollama image")


@dataclasses.dataclass
class Env:
    url: str  # the gateway
    tight_url: str  # a gateway with one slot and a 0.1 s queue wait
    key: str
    double: Any  # tests.ollama_double.ThreadedDouble


@dataclasses.dataclass(frozen=True)
class Row:
    client: str
    call: str
    result: str
    run: Callable[[Env], None]
    reason: str = ""

    @property
    def id(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.client} {self.call}".lower()).strip("-")


# -- clients -------------------------------------------------------------------------------


def _auth(env: Env, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key or env.key}"}


def ollama_client(env: Env, key: str | None = None, url: str | None = None) -> Any:
    import ollama

    return ollama.Client(host=url or env.url, headers=_auth(env, key), timeout=10)


def ollama_async(env: Env) -> Any:
    import ollama

    return ollama.AsyncClient(host=env.url, headers=_auth(env), timeout=10)


def openai_client(env: Env, key: str | None = None, url: str | None = None,
                  retries: int = 0) -> Any:
    import openai

    return openai.OpenAI(base_url=(url or env.url) + "/v1", api_key=key or env.key,
                         max_retries=retries, timeout=10)


def openai_async(env: Env) -> Any:
    import openai

    return openai.AsyncOpenAI(base_url=env.url + "/v1", api_key=env.key, max_retries=0,
                              timeout=10)


def chat_ollama(env: Env, key: str | None = None) -> Any:
    from langchain_ollama import ChatOllama

    return ChatOllama(model=MODEL, base_url=env.url,
                      client_kwargs={"headers": _auth(env, key), "timeout": 10})


def chat_openai(env: Env, **kwargs: Any) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=MODEL, base_url=env.url + "/v1", api_key=env.key, max_retries=0,
                      timeout=10, **kwargs)


def _tokens(text: str) -> None:
    assert text.startswith("tok0 "), text


def _raises(error: type[BaseException], status: int | None = None) -> Any:
    """pytest.raises for a client error, checking its HTTP status where it has one."""

    class _Check:
        def __enter__(self) -> None:
            self.ctx = pytest.raises(error)
            self.info = self.ctx.__enter__()

        def __exit__(self, *exc: Any) -> bool:
            handled = self.ctx.__exit__(*exc)
            if status is not None:
                got = getattr(self.info.value, "status_code", None)
                assert got == status, f"{error.__name__} with status {got}, not {status}"
            return handled

    return _Check()


def _sent(env: Env, path: str) -> dict[str, Any]:
    return env.double.requests_to(path)[-1].body


# -- ollama --------------------------------------------------------------------------------


def _ollama_chat(env: Env) -> None:
    _tokens(ollama_client(env).chat(MODEL, HI, stream=False).message.content)


def _ollama_chat_stream(env: Env) -> None:
    parts = list(ollama_client(env).chat(MODEL, HI, stream=True))
    assert parts[-1].done
    _tokens("".join(p.message.content for p in parts))


def _ollama_async_chat_stream(env: Env) -> None:
    async def go() -> str:
        stream = await ollama_async(env).chat(MODEL, HI, stream=True)
        return "".join([p.message.content async for p in stream])

    _tokens(asyncio.run(go()))


def _ollama_generate(env: Env) -> None:
    _tokens(ollama_client(env).generate(MODEL, "hi", stream=False).response)


def _ollama_async_generate_stream(env: Env) -> None:
    async def go() -> str:
        stream = await ollama_async(env).generate(MODEL, "hi", stream=True)
        return "".join([p.response async for p in stream])

    _tokens(asyncio.run(go()))


def _ollama_tools(env: Env) -> None:
    message = ollama_client(env).chat(MODEL, HI, tools=[TOOL], stream=False).message
    assert message.tool_calls[0].function.name == "get_weather"
    assert _sent(env, "/api/chat")["tools"][0]["function"]["name"] == "get_weather"


def _ollama_format(env: Env) -> None:
    ollama_client(env).chat(MODEL, HI, format=SCHEMA, stream=False)
    assert _sent(env, "/api/chat")["format"] == SCHEMA


def _ollama_embed(env: Env) -> None:
    vectors = ollama_client(env).embed(EMBED_MODEL, ["a", "b"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == 8


def _ollama_embeddings(env: Env) -> None:
    assert len(ollama_client(env).embeddings(EMBED_MODEL, "a").embedding) == 8


def _ollama_list(env: Env) -> None:
    names = {m.model for m in ollama_client(env).list().models}
    assert MODEL in names and NOT_ALLOWED not in names


def _ollama_ps(env: Env) -> None:
    names = {m.model for m in ollama_client(env).ps().models}
    assert MODEL in names and NOT_ALLOWED not in names


def _ollama_show(env: Env) -> None:
    shown = ollama_client(env).show(MODEL)
    assert "tools" in shown.capabilities and shown.template
    assert "/blobs/" not in shown.modelfile


def _ollama_stream_error(env: Env) -> None:
    import ollama

    env.double.push(error_after=2, error_message="CUDA error at /usr/lib/ollama/x.so")
    with _raises(ollama.ResponseError):
        for _ in ollama_client(env).chat(MODEL, HI, stream=True):
            pass


def _ollama_wrong_key(env: Env) -> None:
    import ollama

    with _raises(ollama.ResponseError, 401):
        ollama_client(env, key="wrong-key").chat(MODEL, HI, stream=False)


def _ollama_wrong_model(env: Env) -> None:
    import ollama

    with _raises(ollama.ResponseError, 404):
        ollama_client(env).chat(NOT_ALLOWED, HI, stream=False)


def _ollama_admin(method: str) -> Callable[[Env], None]:
    calls = {
        "pull": lambda c: c.pull(MODEL),
        "create": lambda c: c.create("mine", from_=MODEL),
        "delete": lambda c: c.delete(MODEL),
        "copy": lambda c: c.copy(MODEL, "mine"),
        "push": lambda c: c.push("me/mine"),
    }

    def run(env: Env) -> None:
        import ollama

        with _raises(ollama.ResponseError, 404):
            calls[method](ollama_client(env))
        assert not env.double.records, "it reached Ollama"

    return run


# -- openai --------------------------------------------------------------------------------


def _openai_chat(env: Env) -> None:
    answer = openai_client(env).chat.completions.create(model=MODEL, messages=HI)
    _tokens(answer.choices[0].message.content)


def _openai_chat_stream_usage(env: Env) -> None:
    chunks = list(openai_client(env).chat.completions.create(
        model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True}))
    _tokens("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def _openai_async_chat_stream(env: Env) -> None:
    async def go() -> str:
        stream = await openai_async(env).chat.completions.create(
            model=MODEL, messages=HI, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    _tokens(asyncio.run(go()))


def _openai_completion(env: Env) -> None:
    _tokens(openai_client(env).completions.create(model=MODEL, prompt="hi").choices[0].text)


def _openai_async_completion_stream(env: Env) -> None:
    async def go() -> str:
        stream = await openai_async(env).completions.create(model=MODEL, prompt="hi",
                                                            stream=True)
        return "".join([c.choices[0].text async for c in stream if c.choices])

    _tokens(asyncio.run(go()))


def _openai_tools(env: Env) -> None:
    answer = openai_client(env).chat.completions.create(model=MODEL, messages=HI, tools=[TOOL])
    assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"


def _openai_response_format(env: Env) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}
    openai_client(env).chat.completions.create(model=MODEL, messages=HI,
                                               response_format=response_format)
    assert _sent(env, "/v1/chat/completions")["response_format"] == response_format


def _openai_embeddings(env: Env) -> None:
    data = openai_client(env).embeddings.create(model=EMBED_MODEL, input=["a", "b"]).data
    assert len(data) == 2 and len(data[0].embedding) == 8


def _openai_models(env: Env) -> None:
    ids = {m.id for m in openai_client(env).models.list()}
    assert MODEL in ids and NOT_ALLOWED not in ids


def _openai_retrieve(env: Env) -> None:
    assert openai_client(env).models.retrieve(MODEL).id == MODEL


def _openai_retrieve_other(env: Env) -> None:
    import openai

    with _raises(openai.NotFoundError, 404):
        openai_client(env).models.retrieve(NOT_ALLOWED)


def _openai_stream_error(env: Env) -> None:
    import openai

    env.double.push(error_after=2, error_message="CUDA error at /usr/lib/ollama/x.so")
    with _raises(openai.APIError):
        for _ in openai_client(env).chat.completions.create(model=MODEL, messages=HI,
                                                            stream=True):
            pass


def _openai_wrong_key(env: Env) -> None:
    import openai

    with _raises(openai.AuthenticationError, 401):
        openai_client(env, key="wrong-key").chat.completions.create(model=MODEL, messages=HI)


def _openai_wrong_model(env: Env) -> None:
    import openai

    with _raises(openai.NotFoundError, 404):
        openai_client(env).chat.completions.create(model=NOT_ALLOWED, messages=HI)


def _hold_the_slot(env: Env, seconds: float) -> threading.Thread:
    """A stream on the one-slot gateway that takes `seconds`; returns once it holds the slot."""
    import httpx

    env.double.push(tokens=10, token_delay=seconds / 10)
    holder = threading.Thread(target=lambda: httpx.post(
        env.tight_url + "/api/generate", json={"prompt": "x"}, headers=_auth(env), timeout=10))
    holder.start()
    deadline = time.monotonic() + 5
    while not env.double.requests_to("/api/generate") and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = httpx.post(env.tight_url + "/v1/chat/completions", headers=_auth(env), timeout=10,
                      json={"model": MODEL, "messages": HI})
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1", busy.text
    return holder


def _openai_over_capacity_retried(env: Env) -> None:
    holder = _hold_the_slot(env, 1.5)
    started = time.monotonic()
    answer = openai_client(env, url=env.tight_url, retries=3).chat.completions.create(
        model=MODEL, messages=HI)
    _tokens(answer.choices[0].message.content)
    assert time.monotonic() - started >= 0.9, "it was not refused first (Retry-After: 1)"
    holder.join(10)


def _openai_over_capacity_no_retry(env: Env) -> None:
    import openai

    holder = _hold_the_slot(env, 1.0)
    with _raises(openai.RateLimitError, 429):
        openai_client(env, url=env.tight_url).chat.completions.create(model=MODEL, messages=HI)
    holder.join(10)


# -- langchain -----------------------------------------------------------------------------


def _lc_ollama_invoke(env: Env) -> None:
    _tokens(chat_ollama(env).invoke("hi").content)


def _lc_ollama_stream(env: Env) -> None:
    _tokens("".join(chunk.content for chunk in chat_ollama(env).stream("hi")))


def _lc_ollama_ainvoke(env: Env) -> None:
    _tokens(asyncio.run(chat_ollama(env).ainvoke("hi")).content)


def _lc_ollama_tools(env: Env) -> None:
    message = chat_ollama(env).bind_tools([TOOL]).invoke("weather in Paris?")
    assert message.tool_calls[0]["name"] == "get_weather"


def _lc_ollama_llm(env: Env) -> None:
    from langchain_ollama import OllamaLLM

    llm = OllamaLLM(model=MODEL, base_url=env.url, client_kwargs={"headers": _auth(env)})
    _tokens(llm.invoke("hi"))


def _lc_ollama_embed_query(env: Env) -> None:
    from langchain_ollama import OllamaEmbeddings

    embeddings = OllamaEmbeddings(model=EMBED_MODEL, base_url=env.url,
                                  client_kwargs={"headers": _auth(env)})
    assert len(embeddings.embed_query("hello")) == 8


def _lc_ollama_aembed_documents(env: Env) -> None:
    from langchain_ollama import OllamaEmbeddings

    embeddings = OllamaEmbeddings(model=EMBED_MODEL, base_url=env.url,
                                  client_kwargs={"headers": _auth(env)})
    assert len(asyncio.run(embeddings.aembed_documents(["a", "b"]))) == 2


def _lc_ollama_stream_error(env: Env) -> None:
    import ollama

    env.double.push(error_after=2, error_message="CUDA error at /usr/lib/ollama/x.so")
    with _raises(ollama.ResponseError):
        for _ in chat_ollama(env).stream("hi"):
            pass


def _lc_ollama_wrong_key(env: Env) -> None:
    import ollama

    with _raises(ollama.ResponseError, 401):
        chat_ollama(env, key="wrong-key").invoke("hi")


def _lc_openai_invoke(env: Env) -> None:
    _tokens(chat_openai(env).invoke("hi").content)


def _lc_openai_stream_usage(env: Env) -> None:
    chunks = list(chat_openai(env, stream_usage=True).stream("hi"))
    _tokens("".join(str(c.content) for c in chunks))
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["output_tokens"] == 8


def _lc_openai_ainvoke(env: Env) -> None:
    _tokens(asyncio.run(chat_openai(env).ainvoke("hi")).content)


def _lc_openai_tools(env: Env) -> None:
    message = chat_openai(env).bind_tools([TOOL]).invoke("weather in Paris?")
    assert message.tool_calls[0]["name"] == "get_weather"


def _lc_openai_embed_query(env: Env) -> None:
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model=EMBED_MODEL, base_url=env.url + "/v1",
                                  api_key=env.key, check_embedding_ctx_length=False,
                                  max_retries=0)
    assert len(embeddings.embed_query("hello")) == 8


def _lc_openai_stream_error(env: Env) -> None:
    import openai

    env.double.push(error_after=2, error_message="CUDA error at /usr/lib/ollama/x.so")
    with _raises(openai.APIError):
        for _ in chat_openai(env).stream("hi"):
            pass


WORKS = "works"
STREAM_ERROR = "raises {} (Ollama's in-stream error, scrubbed, with the request id)"

TABLE: tuple[Row, ...] = (
    Row("ollama", "Client.chat(stream=False)", WORKS, _ollama_chat),
    Row("ollama", "Client.chat(stream=True)", WORKS, _ollama_chat_stream),
    Row("ollama", "AsyncClient.chat(stream=True)", WORKS, _ollama_async_chat_stream),
    Row("ollama", "Client.generate(stream=False)", WORKS, _ollama_generate),
    Row("ollama", "AsyncClient.generate(stream=True)", WORKS, _ollama_async_generate_stream),
    Row("ollama", "Client.chat(tools=[...])", "works: tools passed, tool_calls back",
        _ollama_tools),
    Row("ollama", "Client.chat(format=<JSON schema>)", "works: format passed", _ollama_format),
    Row("ollama", "Client.embed(input=[...])", WORKS, _ollama_embed),
    Row("ollama", "Client.embeddings(prompt=...) (legacy)", WORKS, _ollama_embeddings),
    Row("ollama", "Client.list()", "works: allowed models only", _ollama_list),
    Row("ollama", "Client.ps()", "works: allowed models only", _ollama_ps),
    Row("ollama", "Client.show(model)", "works: listed fields, no server paths", _ollama_show),
    Row("ollama", "Client.chat(stream=True), Ollama fails mid-stream",
        STREAM_ERROR.format("ResponseError"), _ollama_stream_error),
    Row("ollama", "Client.chat() with a wrong key", "refused: 401 ResponseError",
        _ollama_wrong_key, "the key is not an active one"),
    Row("ollama", "Client.chat(model=<not allowed>)", "refused: 404 ResponseError",
        _ollama_wrong_model, "only models in GATEWAY_MODELS are served"),
    *(Row("ollama", f"Client.{m}(...)", "refused: 404 ResponseError", _ollama_admin(m),
          ADMIN_REASON) for m in ("pull", "create", "delete", "copy", "push")),
    Row("openai", "chat.completions.create()", WORKS, _openai_chat),
    Row("openai", "chat.completions.create(stream=True, stream_options={include_usage})",
        "works: usage in the last chunk", _openai_chat_stream_usage),
    Row("openai", "AsyncOpenAI chat.completions.create(stream=True)", WORKS,
        _openai_async_chat_stream),
    Row("openai", "completions.create()", WORKS, _openai_completion),
    Row("openai", "AsyncOpenAI completions.create(stream=True)", WORKS,
        _openai_async_completion_stream),
    Row("openai", "chat.completions.create(tools=[...])",
        "works: tools passed, tool_calls back", _openai_tools),
    Row("openai", "chat.completions.create(response_format=<json_schema>)",
        "works: response_format passed", _openai_response_format),
    Row("openai", "embeddings.create(input=[...])", WORKS, _openai_embeddings),
    Row("openai", "models.list()", "works: allowed models only", _openai_models),
    Row("openai", "models.retrieve(model)", WORKS, _openai_retrieve),
    Row("openai", "models.retrieve(<not allowed>)", "refused: 404 NotFoundError",
        _openai_retrieve_other, "only models in GATEWAY_MODELS are served"),
    Row("openai", "chat.completions.create(stream=True), Ollama fails mid-stream",
        STREAM_ERROR.format("APIError"), _openai_stream_error),
    Row("openai", "chat.completions.create() with a wrong key",
        "refused: 401 AuthenticationError", _openai_wrong_key, "the key is not an active one"),
    Row("openai", "chat.completions.create(model=<not allowed>)", "refused: 404 NotFoundError",
        _openai_wrong_model, "only models in GATEWAY_MODELS are served"),
    Row("openai", "chat.completions.create(), every slot busy, max_retries=3",
        "works: 429 with Retry-After, the client's retry succeeds",
        _openai_over_capacity_retried),
    Row("openai", "chat.completions.create(), every slot busy, max_retries=0",
        "refused: 429 RateLimitError", _openai_over_capacity_no_retry,
        "over capacity (GATEWAY_MAX_CONCURRENCY busy for GATEWAY_QUEUE_TIMEOUT_SECONDS)"),
    Row("langchain-ollama", "ChatOllama.invoke()", WORKS, _lc_ollama_invoke),
    Row("langchain-ollama", "ChatOllama.stream()", WORKS, _lc_ollama_stream),
    Row("langchain-ollama", "ChatOllama.ainvoke()", WORKS, _lc_ollama_ainvoke),
    Row("langchain-ollama", "ChatOllama.bind_tools([...]).invoke()",
        "works: tool_calls back", _lc_ollama_tools),
    Row("langchain-ollama", "OllamaLLM.invoke()", WORKS, _lc_ollama_llm),
    Row("langchain-ollama", "OllamaEmbeddings().embed_query() (default settings)",
        "works: null options are unset", _lc_ollama_embed_query),
    Row("langchain-ollama", "OllamaEmbeddings().aembed_documents()", WORKS,
        _lc_ollama_aembed_documents),
    Row("langchain-ollama", "ChatOllama.stream(), Ollama fails mid-stream",
        STREAM_ERROR.format("ResponseError"), _lc_ollama_stream_error),
    Row("langchain-ollama", "ChatOllama.invoke() with a wrong key",
        "refused: 401 ResponseError", _lc_ollama_wrong_key, "the key is not an active one"),
    Row("langchain-openai", "ChatOpenAI.invoke()", WORKS, _lc_openai_invoke),
    Row("langchain-openai", "ChatOpenAI(stream_usage=True).stream()",
        "works: usage_metadata in the last chunk", _lc_openai_stream_usage),
    Row("langchain-openai", "ChatOpenAI.ainvoke()", WORKS, _lc_openai_ainvoke),
    Row("langchain-openai", "ChatOpenAI.bind_tools([...]).invoke()", "works: tool_calls back",
        _lc_openai_tools),
    Row("langchain-openai", "OpenAIEmbeddings(check_embedding_ctx_length=False).embed_query()",
        WORKS, _lc_openai_embed_query),
    Row("langchain-openai", "ChatOpenAI.stream(), Ollama fails mid-stream",
        STREAM_ERROR.format("openai.APIError"), _lc_openai_stream_error),
)


# -- the docs section (docs/clients.md) ----------------------------------------------------------


def _versions() -> str:
    pins = {}
    requirements = REPO / "requirements-dev.txt"
    for line in requirements.read_text().splitlines():
        name, _, version = line.partition("==")
        if name in ("ollama", "openai", "langchain-ollama", "langchain-openai"):
            pins[name] = version
    return ", ".join(f"{name} {pins[name]}" for name in sorted(pins))


def render() -> str:
    """The generated section "client-compatibility" of docs/clients.md (tools/docs.py)."""
    lines = [
        f"Real client libraries ({_versions()}, pinned in requirements-dev.txt) called through "
        "the gateway by `tests/clients/` (part of `make test`). **The upstream was the Ollama "
        "protocol double (`tests/ollama_double.py`), not a model**: the rows say what the "
        "gateway passes and refuses, not how a model answers.",
        "",
        "| client | call | result | reason for the refusal |",
        "|---|---|---|---|",
    ]
    for row in TABLE:
        lines.append(f"| {row.client} | `{row.call}` | {row.result} | {row.reason} |")
    return "\n".join(lines)


