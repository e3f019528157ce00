"""A protocol double for Ollama: a stand-in HTTP server. NO MODEL RUNS HERE.

It answers the routes the gateway proxies, in the shapes Ollama documents (ollama/ollama
docs/api.md and docs/openai.md, read at commit 01e52d24bc00defcd9bcc6d995b11df0f08bc6f1):
/api/chat, /api/generate, /api/embed, /api/embeddings, /api/show, /api/tags, /api/version,
/api/ps and the OpenAI-compatible /v1/chat/completions, /v1/completions, /v1/embeddings,
/v1/models, /v1/models/{model}, streaming
(NDJSON for /api/*, SSE for /v1/*) and not. The "tokens" it produces are the words ``tok0 tok1
...``; the embeddings are made-up numbers. Nothing it returns says anything about a real model's
speed or output: it exists so that the gateway's plumbing (streaming, timeouts, disconnects,
errors, limits) can be tested and benchmarked without Ollama, a GPU or model weights.

Knobs (see ``Knobs``) shape every answer: token count, per-token delay, time to first token, a
stall mid-stream, an abrupt close, an error status, models reported missing, whether /api/ps
lists the models as loaded, and stream faults (a wrong Content-Type, a redirect, a stream cut
short without its final object, Ollama's in-stream error line). They are set three ways:

- per instance: ``OllamaDouble(tokens=4)``, ``double.set(...)`` or ``POST /_double/knobs``;
- for the next generation request only: ``double.push(...)`` or ``POST /_double/push``;
- per request, when calling the double directly: an ``X-Double-Knobs: {"ttft": 2}`` header.

Every request is recorded (``double.records``, ``GET /_double/records``) with when it started,
when its first byte went out, whether the client went away and when: the gateway's disconnect
handling is judged on that record.

Run as a process (binds 127.0.0.1 only)::

    python -m tests.ollama_double --port 11434 [--tokens 64 --token-delay 0.02 --ttft 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"
DEFAULT_MODELS = ("llama3.2:1b", "qwen2.5:0.5b", "notallowed:latest")
VERSION = "0.12.6"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
# Upper bound for any wait the double makes, so no test can hang on it.
MAX_WAIT_SECONDS = 3600.0


@dataclasses.dataclass
class Knobs:
    tokens: int = 8  # tokens generated (fewer if num_predict / max_tokens says so)
    token_delay: float = 0.0  # seconds between two tokens
    ttft: float = 0.0  # seconds before the first token (and before response headers, as Ollama)
    stall_after: int | None = None  # stop sending after this many tokens ...
    stall_seconds: float = MAX_WAIT_SECONDS  # ... for this long, then carry on
    close_after: int | None = None  # abort the connection after this many tokens
    error_status: int | None = None  # answer every request with this status
    error_message: str = "double: injected failure"
    missing_models: tuple[str, ...] = ()  # answered 404, as Ollama does for a model not pulled
    loaded: bool = True  # /api/ps lists the models as loaded
    models: tuple[str, ...] = DEFAULT_MODELS  # what /api/tags and /v1/models list
    embedding_dim: int = 8
    # Stream faults the gateway must catch before or after the first byte:
    content_type: str | None = None  # the stream's Content-Type instead of NDJSON/SSE
    redirect_to: str | None = None  # answer generations with 307 and this Location
    truncate: bool = False  # end a stream cleanly without its final object / [DONE]
    error_after: int | None = None  # after this many tokens, Ollama's in-stream error line

    def updated(self, changes: dict[str, Any]) -> Knobs:
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - fields
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
        return dataclasses.replace(self, **clean)


@dataclasses.dataclass
class Record:
    """What happened to one request, as the double saw it."""

    id: int
    method: str
    path: str
    body: Any
    model: str | None
    stream: bool
    started: float  # time.monotonic()
    first_byte: float | None = None
    finished: float | None = None
    tokens_sent: int = 0
    outcome: str = "running"  # completed | client_gone | aborted | error | running
    client_gone_at: float | None = None

    @property
    def client_gone(self) -> bool:
        return self.outcome == "client_gone"

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["client_gone"] = self.client_gone
        return data


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _normalize(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def _prompt_tokens(body: Any) -> int:
    return max(1, len(json.dumps(body, ensure_ascii=False).encode()) // 4)


class OllamaDouble:
    """The double's state and aiohttp application; start it in a running event loop."""

    def __init__(self, host: str = HOST, port: int = 0, **knobs: Any) -> None:
        if host != HOST:
            raise ValueError("the double binds 127.0.0.1 only")
        self.host = host
        self.port = port
        self.defaults = Knobs().updated(knobs)
        self.oneshots: deque[Knobs] = deque()
        self.records: list[Record] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    # -- knobs and records -----------------------------------------------------------------

    def set(self, **knobs: Any) -> None:
        self.defaults = self.defaults.updated(knobs)

    def push(self, **knobs: Any) -> None:
        """Knobs for the next generation request (POST) only, on top of the defaults."""
        self.oneshots.append(self.defaults.updated(knobs))

    def reset(self, **knobs: Any) -> None:
        self.defaults = Knobs().updated(knobs)
        self.oneshots.clear()
        self.records.clear()

    def requests_to(self, path: str) -> list[Record]:
        return [r for r in list(self.records) if r.path == path]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- server lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        # handler_cancellation: a client that goes away cancels its handler, which is how the
        # double learns (and records) that the connection closed even while it sleeps.
        self._runner = web.AppRunner(self.make_app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=512)
        await site.start()
        server = site._server  # noqa: SLF001 - the bound port when port=0
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/chat", self._generation("chat"))
        app.router.add_post("/api/generate", self._generation("generate"))
        app.router.add_post("/api/embed", self._embed)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_post("/v1/chat/completions", self._generation("openai_chat"))
        app.router.add_post("/v1/completions", self._generation("openai_completion"))
        app.router.add_post("/v1/embeddings", self._embed)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model:.+}", self._model)
        app.router.add_post("/api/show", self._show)
        app.router.add_post("/api/embeddings", self._embeddings)
        app.router.add_post("/_double/knobs", self._control_knobs)
        app.router.add_post("/_double/push", self._control_push)
        app.router.add_post("/_double/reset", self._control_reset)
        app.router.add_get("/_double/records", self._control_records)
        return app

    # -- helpers ---------------------------------------------------------------------------

    def _knobs_for(self, request: web.Request, consume_oneshot: bool) -> Knobs:
        knobs = self.defaults
        if consume_oneshot and self.oneshots:
            with contextlib.suppress(IndexError):
                knobs = self.oneshots.popleft()
        header = request.headers.get("X-Double-Knobs")
        if header:
            knobs = knobs.updated(json.loads(header))
        return knobs

    def _record(self, request: web.Request, body: Any, stream: bool) -> Record:
        model = body.get("model") if isinstance(body, dict) else None
        record = Record(
            id=next(self._ids),
            method=request.method,
            path=request.path,
            body=body,
            model=model if isinstance(model, str) else None,
            stream=stream,
            started=time.monotonic(),
        )
        self.records.append(record)
        return record

    @staticmethod
    def _error(openai: bool, status: int, message: str) -> web.Response:
        if openai:
            kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
            payload: dict[str, Any] = {
                "error": {"message": message, "type": kind, "param": None, "code": None}
            }
        else:
            payload = {"error": message}
        return web.json_response(payload, status=status)

    def _refusal(self, knobs: Knobs, openai: bool, model: str | None) -> web.Response | None:
        if knobs.error_status is not None:
            return self._error(openai, knobs.error_status, knobs.error_message)
        if model is not None and _normalize(model) in {_normalize(m) for m in knobs.missing_models}:
            return self._error(openai, 404, f'model "{model}" not found, try pulling it first')
        return None

    async def _read_json(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    # -- generation (chat, generate, and their OpenAI forms) ----------------------------------

    def _generation(self, kind: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._generate(request, kind)

        return handler

    async def _generate(self, request: web.Request, kind: str) -> web.StreamResponse:
        openai = kind.startswith("openai")
        body = await self._read_json(request)
        knobs = self._knobs_for(request, consume_oneshot=True)
        if not isinstance(body, dict):
            self._record(request, body, False).outcome = "error"
            return self._error(openai, 400, "invalid JSON body")
        # Ollama streams unless told not to; its OpenAI routes stream only when asked.
        stream = body.get("stream") is True if openai else body.get("stream") is not False
        record = self._record(request, body, stream)
        model = body.get("model") if isinstance(body.get("model"), str) else "unknown"
        refusal = self._refusal(knobs, openai, model)
        if refusal is not None:
            record.outcome = "error"
            record.finished = time.monotonic()
            return refusal

        if knobs.redirect_to is not None:
            record.outcome = "error"
            raise web.HTTPTemporaryRedirect(knobs.redirect_to)
        if openai:
            limit = body.get("max_tokens")
        else:
            options = body.get("options") if isinstance(body.get("options"), dict) else {}
            limit = options.get("num_predict")
        count = knobs.tokens
        done_reason = "stop"
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < count:
            count, done_reason = limit, "length"
        shaper = _Shaper(kind, model, body, count, done_reason)
        try:
            if stream:
                return await self._stream(request, record, knobs, shaper)
            return await self._whole(record, knobs, shaper)
        except asyncio.CancelledError:
            # handler_cancellation: the client went away
            record.outcome = "client_gone"
            record.client_gone_at = record.finished = time.monotonic()
            raise

    async def _whole(self, record: Record, knobs: Knobs, shaper: _Shaper) -> web.Response:
        await asyncio.sleep(min(knobs.ttft + knobs.token_delay * max(shaper.count - 1, 0),
                                MAX_WAIT_SECONDS))
        if knobs.stall_after is not None:
            await asyncio.sleep(min(knobs.stall_seconds, MAX_WAIT_SECONDS))
        response = web.json_response(shaper.whole())
        record.first_byte = time.monotonic()
        record.tokens_sent = shaper.count
        record.outcome = "completed"
        record.finished = time.monotonic()
        return response

    async def _stream(
        self, request: web.Request, record: Record, knobs: Knobs, shaper: _Shaper
    ) -> web.StreamResponse:
        if knobs.ttft:
            await asyncio.sleep(min(knobs.ttft, MAX_WAIT_SECONDS))
        content_type = knobs.content_type or (SSE if shaper.openai else NDJSON)
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        try:
            await response.prepare(request)
            for index in range(shaper.count):
                if index and knobs.token_delay:
                    await asyncio.sleep(knobs.token_delay)
                if knobs.close_after is not None and index >= knobs.close_after:
                    return self._abort(request, record, response)
                if knobs.stall_after is not None and index == knobs.stall_after:
                    await asyncio.sleep(min(knobs.stall_seconds, MAX_WAIT_SECONDS))
                if knobs.error_after is not None and index >= knobs.error_after:
                    # Ollama ends a failed stream with one error object (docs/api.md "Errors").
                    await response.write(shaper.error_chunk(knobs.error_message))
                    await response.write_eof()
                    record.outcome = "error"
                    record.finished = time.monotonic()
                    return response
                await response.write(shaper.token_chunk(index))
                if record.first_byte is None:
                    record.first_byte = time.monotonic()
                record.tokens_sent = index + 1
            if knobs.close_after is not None and knobs.close_after >= shaper.count:
                return self._abort(request, record, response)
            for chunk in [] if knobs.truncate else shaper.final_chunks():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            record.outcome = "client_gone"
            record.client_gone_at = record.finished = time.monotonic()
            return response
        record.outcome = "completed"
        record.finished = time.monotonic()
        return response

    @staticmethod
    def _abort(request: web.Request, record: Record, response: web.StreamResponse) -> Any:
        record.outcome = "aborted"
        record.finished = time.monotonic()
        if request.transport is not None:
            request.transport.abort()
        return response

    # -- embeddings --------------------------------------------------------------------------

    async def _embed(self, request: web.Request) -> web.Response:
        openai = request.path.startswith("/v1/")
        body = await self._read_json(request)
        knobs = self._knobs_for(request, consume_oneshot=True)
        if not isinstance(body, dict):
            self._record(request, body, False).outcome = "error"
            return self._error(openai, 400, "invalid JSON body")
        record = self._record(request, body, False)
        model = body.get("model") if isinstance(body.get("model"), str) else "unknown"
        refusal = self._refusal(knobs, openai, model)
        if refusal is not None:
            record.outcome = "error"
            return refusal
        inputs = body.get("input", "")
        texts = inputs if isinstance(inputs, list) else [inputs]
        vectors = [
            [round(((i + 1) * (j + 3) % 17) / 17.0 - 0.5, 6) for j in range(knobs.embedding_dim)]
            for i, _ in enumerate(texts)
        ]
        try:
            if knobs.ttft:
                await asyncio.sleep(min(knobs.ttft, MAX_WAIT_SECONDS))
        except asyncio.CancelledError:
            record.outcome = "client_gone"
            record.client_gone_at = record.finished = time.monotonic()
            raise
        prompt_tokens = _prompt_tokens(inputs)
        if openai:
            payload: dict[str, Any] = {
                "object": "list",
                "data": [
                    {"object": "embedding", "embedding": v, "index": i}
                    for i, v in enumerate(vectors)
                ],
                "model": model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            }
        else:
            payload = {
                "model": model,
                "embeddings": vectors,
                "total_duration": 14143917,
                "load_duration": 1019500,
                "prompt_eval_count": prompt_tokens,
            }
        record.first_byte = record.finished = time.monotonic()
        record.outcome = "completed"
        return web.json_response(payload)

    # -- listings ----------------------------------------------------------------------------

    def _listing(self, request: web.Request, body: Any = None
                 ) -> tuple[Knobs, web.Response | None]:
        knobs = self._knobs_for(request, consume_oneshot=False)
        record = self._record(request, body, False)
        record.outcome = "completed"
        record.finished = time.monotonic()
        if knobs.error_status is not None:
            return knobs, self._error(request.path.startswith("/v1/"), knobs.error_status,
                                      knobs.error_message)
        return knobs, None

    @staticmethod
    def _model_entry(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2026-11-01T10:00:00.000000000Z",
            "size": 1321098329,
            "digest": "baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "llama",
                "families": ["llama"],
                "parameter_size": "1.2B",
                "quantization_level": "Q8_0",
            },
        }

    async def _tags(self, request: web.Request) -> web.Response:
        knobs, error = self._listing(request)
        if error is not None:
            return error
        return web.json_response({"models": [self._model_entry(m) for m in knobs.models]})

    async def _ps(self, request: web.Request) -> web.Response:
        knobs, error = self._listing(request)
        if error is not None:
            return error
        models = []
        if knobs.loaded:
            for name in knobs.models:
                entry = self._model_entry(name)
                entry.pop("modified_at")
                entry["expires_at"] = "2026-11-28T18:00:00.000000000Z"
                entry["size_vram"] = entry["size"]
                models.append(entry)
        return web.json_response({"models": models})

    async def _version(self, request: web.Request) -> web.Response:
        _, error = self._listing(request)
        return error or web.json_response({"version": VERSION})

    async def _models(self, request: web.Request) -> web.Response:
        knobs, error = self._listing(request)
        if error is not None:
            return error
        data = [
            {"id": m, "object": "model", "created": 1761991200, "owned_by": "library"}
            for m in knobs.models
        ]
        return web.json_response({"object": "list", "data": data})

    def _known(self, knobs: Knobs, model: object) -> bool:
        return isinstance(model, str) and _normalize(model) in {
            _normalize(m) for m in knobs.models if m not in knobs.missing_models}

    async def _model(self, request: web.Request) -> web.Response:
        """GET /v1/models/{model} (docs/openai.md, "/v1/models/{model}")."""
        knobs, error = self._listing(request)
        if error is not None:
            return error
        name = request.match_info["model"]
        if not self._known(knobs, name):
            return self._error(True, 404, f"model '{name}' not found")
        return web.json_response(
            {"id": name, "object": "model", "created": 1761991200, "owned_by": "library"})

    async def _show(self, request: web.Request) -> web.Response:
        """POST /api/show (docs/api.md "Show Model Information"), with the server path in the
        modelfile's FROM line that Ollama writes there, and a field no client reads."""
        body = await self._read_json(request)
        knobs, error = self._listing(request, body)
        if error is not None:
            return error
        name = body.get("model") if isinstance(body, dict) else None
        if not self._known(knobs, name):
            return self._error(False, 404, f"model '{name}' not found")
        blob = "/root/.ollama/models/blobs/sha256-" + "7" * 64
        return web.json_response({
            "modelfile": (f'# Modelfile generated by "ollama show"\n# FROM {name}\n\n'
                          f"FROM {blob}\nADAPTER /root/.ollama/models/blobs/sha256-adapter\n"
                          'TEMPLATE """{{ .Prompt }}"""\nPARAMETER stop "<|eot_id|>"'),
            "parameters": 'stop                           "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "license": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT",
            "details": self._model_entry(str(name))["details"],
            "model_info": {"general.architecture": "llama", "llama.context_length": 131072,
                           "llama.embedding_length": 2048},
            "capabilities": ["completion", "tools"],
            "modified_at": "2026-11-01T10:00:00.000000000Z",
            "server_debug": {"blob_dir": blob},  # not documented: must not pass the gateway
        })

    async def _embeddings(self, request: web.Request) -> web.Response:
        """POST /api/embeddings, the legacy one (docs/api.md "Generate Embedding")."""
        body = await self._read_json(request)
        knobs = self._knobs_for(request, consume_oneshot=True)
        record = self._record(request, body, False)
        record.outcome = "completed"
        record.finished = time.monotonic()
        model = body.get("model") if isinstance(body, dict) else None
        refusal = self._refusal(knobs, False, model if isinstance(model, str) else None)
        if refusal is not None:
            return refusal
        return web.json_response(
            {"embedding": [round((j + 3) % 17 / 17.0 - 0.5, 6)
                           for j in range(knobs.embedding_dim)]})

    # -- control -----------------------------------------------------------------------------

    async def _control_knobs(self, request: web.Request) -> web.Response:
        self.set(**await request.json())
        return web.json_response(dataclasses.asdict(self.defaults))

    async def _control_push(self, request: web.Request) -> web.Response:
        self.push(**await request.json())
        return web.json_response({"queued": len(self.oneshots)})

    async def _control_reset(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.reset(**(json.loads(raw) if raw else {}))
        return web.json_response({"ok": True})

    async def _control_records(self, request: web.Request) -> web.Response:
        records = [r.as_dict() for r in list(self.records)[-1000:]]
        for record in records:
            record.pop("body")  # bodies stay in-process; they may hold test prompts
        return web.json_response({"records": records})


class _Shaper:
    """Builds the documented response shapes of one generation."""

    def __init__(self, kind: str, model: str, body: dict[str, Any], count: int, done_reason: str):
        self.kind = kind
        self.openai = kind.startswith("openai")
        self.model = model
        self.count = count
        self.done_reason = done_reason
        self.prompt_tokens = _prompt_tokens(body.get("messages") or body.get("prompt") or "")
        self.started = time.monotonic_ns()
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        # With tools, the answer calls the first one (arguments {}), as a model may.
        tools = body.get("tools") if isinstance(body.get("tools"), list) else []
        first = tools[0].get("function") if tools and isinstance(tools[0], dict) else None
        self.tool = first.get("name") if isinstance(first, dict) else None
        if self.tool is not None and self.kind in ("chat", "openai_chat"):
            self.done_reason = "tool_calls" if self.openai else self.done_reason
        else:
            self.tool = None
        self.id = f"{'chatcmpl' if kind == 'openai_chat' else 'cmpl'}-{time.monotonic_ns() % 10**6}"

    @staticmethod
    def token(index: int) -> str:
        return f"tok{index} "

    def _metrics(self) -> dict[str, Any]:
        total = max(time.monotonic_ns() - self.started, 1)
        return {
            "total_duration": total,
            "load_duration": 1000,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": 1000,
            "eval_count": self.count,
            "eval_duration": total,
        }

    def _ollama(self, content: str, done: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "created_at": _now_iso()}
        if self.kind == "chat":
            data["message"] = {"role": "assistant", "content": content}
        else:
            data["response"] = content
        data["done"] = done
        if done:
            if self.tool is not None:
                data["message"]["tool_calls"] = [
                    {"function": {"name": self.tool, "arguments": {}}}]
            data["done_reason"] = self.done_reason
            data.update(self._metrics())
        return data

    def _openai_tool_calls(self, stream: bool) -> list[dict[str, Any]]:
        call: dict[str, Any] = {"id": "call_0", "type": "function",
                                "function": {"name": self.tool, "arguments": "{}"}}
        return [{"index": 0, **call}] if stream else [call]

    def error_chunk(self, message: str) -> bytes:
        if self.openai:
            return self._sse({"error": {"message": message, "type": "api_error",
                                        "param": None, "code": None}})
        return json.dumps({"error": message}).encode() + b"\n"

    def _usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.count,
            "total_tokens": self.prompt_tokens + self.count,
        }

    def _openai_chunk(self, content: str, finish: str | None) -> dict[str, Any]:
        if self.kind == "openai_chat":
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
            obj = "chat.completion.chunk"
        else:
            choice = {"text": content, "index": 0, "finish_reason": finish}
            obj = "text_completion"
        return self._openai_envelope(obj, choice)

    def _openai_envelope(self, obj: str, choice: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_ollama",
            "choices": [choice],
        }

    @staticmethod
    def _sse(data: dict[str, Any] | str) -> bytes:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        return f"data: {text}\n\n".encode()

    def token_chunk(self, index: int) -> bytes:
        if self.openai:
            return self._sse(self._openai_chunk(self.token(index), None))
        return json.dumps(self._ollama(self.token(index), False)).encode() + b"\n"

    def final_chunks(self) -> list[bytes]:
        if not self.openai:
            return [json.dumps(self._ollama("", True)).encode() + b"\n"]
        last = self._openai_chunk("", self.done_reason)
        if self.tool is not None:
            last["choices"][0]["delta"]["tool_calls"] = self._openai_tool_calls(stream=True)
        chunks = [self._sse(last)]
        if self.include_usage:
            usage = self._openai_chunk("", None)
            usage["choices"] = []
            usage["usage"] = self._usage()
            chunks.append(self._sse(usage))
        chunks.append(self._sse("[DONE]"))
        return chunks

    def whole(self) -> dict[str, Any]:
        text = "".join(self.token(i) for i in range(self.count))
        if not self.openai:
            return self._ollama(text, True)
        if self.kind == "openai_chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": self.done_reason,
            }
            if self.tool is not None:
                choice["message"]["tool_calls"] = self._openai_tool_calls(stream=False)
            obj = "chat.completion"
        else:
            choice = {"text": text, "index": 0, "finish_reason": self.done_reason}
            obj = "text_completion"
        return self._openai_envelope(obj, choice) | {"usage": self._usage()}


class ThreadedDouble:
    """An OllamaDouble served from its own event loop in a daemon thread (for sync tests)."""

    def __init__(self, **knobs: Any) -> None:
        self.double = OllamaDouble(**knobs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="ollama-double")

    def start(self) -> ThreadedDouble:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.double.start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.double.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ThreadedDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.double.url

    @property
    def records(self) -> list[Record]:
        return list(self.double.records)

    def set(self, **knobs: Any) -> None:
        self.double.set(**knobs)

    def push(self, **knobs: Any) -> None:
        self.double.push(**knobs)

    def reset(self, **knobs: Any) -> None:
        self.double.reset(**knobs)

    def requests_to(self, path: str) -> list[Record]:
        return self.double.requests_to(path)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Poll predicate (bounded) until it returns something truthy; return it or None."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(0.005)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--tokens", type=int, default=Knobs.tokens)
    parser.add_argument("--token-delay", type=float, default=Knobs.token_delay)
    parser.add_argument("--ttft", type=float, default=Knobs.ttft)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--not-loaded", action="store_true", help="/api/ps lists nothing")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    double = OllamaDouble(
        port=args.port,
        tokens=args.tokens,
        token_delay=args.token_delay,
        ttft=args.ttft,
        models=tuple(m for m in args.models.split(",") if m),
        loaded=not args.not_loaded,
    )
    await double.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"ollama-double (a stand-in, no model runs) listening on {double.url}", flush=True)
    await stop.wait()
    await double.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
