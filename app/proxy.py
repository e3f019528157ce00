"""A proxied exchange with Ollama, as an ASGI response: admission, upstream call, pass-through.

One ProxyCall serves one request. Three things run at once and the first to finish decides:

  work      take a concurrency slot (generations only), call Ollama, relay the answer
  watcher   wait for http.disconnect from the client
  deadline  the drain deadline (app.drain)

A client that goes away - while queued, during time to first token, mid-stream, or while a
non-streaming answer is being generated - cancels `work`, whose cleanup closes the upstream
connection, so Ollama stops generating. The response status is decided only when Ollama's first
body byte arrives (Ollama sends its headers with it), so a failure before that is a proper status
(503/504/502/4xx) in the route's error shape; after it, a failure ends the stream with a terminal
error line (NDJSON) or error event (SSE) and a clean end of the body. OpenAI streams get a
`: ping` comment during silences, only after the first byte and only between two events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from app.context import RequestInfo, info_of
from app.errors import OPENAI, GatewayError, error_payload, send_error
from app.upstream import MAX_ERROR_BODY, UpstreamResponse, upstream_status_error

if TYPE_CHECKING:
    from app.runtime import Gateway

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
JSON = "application/json"
MAX_UPSTREAM_BODY = 64 * 1024 * 1024
_MAX_TRACKED_LINE = 1024 * 1024
_CANCEL_WAIT_SECONDS = 5.0

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:  # bounded by the connection: it ends with http.disconnect
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.wait({task}, timeout=_CANCEL_WAIT_SECONDS)


class _Downstream:
    """The client side of the exchange: knows what it has sent, so it can end it properly."""

    def __init__(self, send: Send, info: RequestInfo, stream_format: str | None) -> None:
        self.send = send
        self.info = info
        self.format = stream_format
        self.started = False
        self.finished = False
        self.tail = b"\n\n"

    @property
    def at_event_boundary(self) -> bool:
        return self.tail.endswith(b"\n\n")

    async def start_stream(self) -> None:
        assert self.format is not None
        self.started = True
        await self.send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", self.format.encode())],
        })

    async def write(self, chunk: bytes) -> None:
        self.tail = (self.tail + chunk)[-2:]
        await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def finish(self) -> None:
        if not self.finished:
            self.finished = True
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def whole(self, body: bytes) -> None:
        self.started = self.finished = True
        await self.send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        })
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    def _terminal(self, error: GatewayError) -> bytes:
        payload = error_payload(self.info.style, error.status, error.message,
                                self.info.request_id, error.code)
        text = json.dumps(payload, separators=(",", ":")).encode()
        if self.format == SSE:
            close = b"" if self.tail.endswith(b"\n\n") else (
                b"\n" if self.tail.endswith(b"\n") else b"\n\n")
            return close + b"data: " + text + b"\n\n"
        return (b"" if self.tail.endswith(b"\n") else b"\n") + text + b"\n"

    async def fail(self, error: GatewayError, *, close: bool = False) -> None:
        if self.finished:
            return
        if not self.started:
            self.started = self.finished = True
            await send_error(self.send, self.info.style, error, self.info.request_id,
                             close=close)
            return
        await self.write(self._terminal(error))
        await self.finish()


class _UsageTracker:
    """Finds the token counts Ollama reports, without parsing every line of a stream."""

    def __init__(self, info: RequestInfo, stream_format: str | None) -> None:
        self.info = info
        self.sse = stream_format == SSE
        self.partial = b""
        self.enabled = True

    def feed(self, chunk: bytes) -> None:
        if not self.enabled:
            return
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > _MAX_TRACKED_LINE:
            self.enabled = False  # a pathological line: stop looking, keep relaying
        for line in lines:
            if b'"done":true' in line or b'"done": true' in line or b'"usage"' in line \
                    or b'"error"' in line:
                self._line(line)

    def _line(self, line: bytes) -> None:
        if self.sse:
            if not line.startswith(b"data:"):
                return
            line = line[5:].strip()
        try:
            data = json.loads(line)
        except ValueError:
            return
        if isinstance(data, dict):
            account(self.info, data)


def account(info: RequestInfo, data: dict[str, Any]) -> None:
    """Token counts from an Ollama final object or an OpenAI usage block, when present."""
    if data.get("error") is not None:
        info.reason = info.reason or "upstream_error_in_body"
    usage = data.get("usage")
    if isinstance(usage, dict):
        prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
    else:
        prompt, output = data.get("prompt_eval_count"), data.get("eval_count")
    if isinstance(prompt, int) and not isinstance(prompt, bool):
        info.prompt_tokens = prompt
    if isinstance(output, int) and not isinstance(output, bool):
        info.output_tokens = output


class ProxyCall(Response):
    """Returned by a route; FastAPI hands it the ASGI channels and it does the rest."""

    def __init__(
        self,
        gateway: Gateway,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        stream: bool = False,
        generation: bool = False,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        # Deliberately not calling Response.__init__: there is no body to render up front.
        self.gateway = gateway
        self.method = method
        self.path = path
        self.payload = payload
        self.stream = stream
        self.generation = generation
        self.transform = transform
        self.status_code = 200
        self.background = None

    def _stream_format(self, info: RequestInfo) -> str | None:
        if not self.stream:
            return None
        return SSE if info.style == OPENAI else NDJSON

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = info_of(scope)
        info.proxied = self.generation
        down = _Downstream(send, info, self._stream_format(info))
        drain = self.gateway.drain
        work = asyncio.create_task(self._work(down, info))
        watcher = asyncio.create_task(_wait_for_disconnect(receive))
        deadline = drain.watch()
        try:
            done, _ = await asyncio.wait({work, watcher, deadline},
                                         return_when=asyncio.FIRST_COMPLETED)
            if work in done:
                work.result()
            elif watcher in done:
                info.disconnected = True
                info.reason = "client_disconnected"
                await _stop(work)
            else:
                info.reason = "cut_at_shutdown"
                await _stop(work)
                await down.fail(GatewayError(
                    503, "the gateway is shutting down: the stream was cut at the end of the "
                    "grace period", code="shutting_down"))
        except asyncio.CancelledError:
            # The server cancelled the request (its own graceful-shutdown limit ran out before
            # ours, which should not happen): still try to end the stream with an error.
            work.cancel()
            info.reason = info.reason or "cancelled_by_server"
            with contextlib.suppress(Exception):
                await down.fail(GatewayError(503, "the gateway is shutting down",
                                             code="shutting_down"))
            raise
        finally:
            watcher.cancel()
            drain.unwatch(deadline)
            if not work.done():
                work.cancel()

    async def _work(self, down: _Downstream, info: RequestInfo) -> None:
        gateway = self.gateway
        slot = False
        try:
            if gateway.drain.draining:
                raise GatewayError(503, "the gateway is shutting down", code="shutting_down")
            if self.generation:
                queue_timeout = gateway.settings.queue_timeout_seconds
                if not await gateway.limiter.acquire(queue_timeout):
                    retry = gateway.limiter.retry_after_seconds(queue_timeout)
                    raise GatewayError(429, "too many requests in flight; retry shortly",
                                       code="rate_limit_exceeded", reason="over_capacity",
                                       headers=[("Retry-After", str(retry))])
                slot = True
            await self._exchange(down, info)
        except GatewayError as error:
            info.reason = info.reason or error.reason
            await down.fail(error, close=gateway.drain.draining)
        finally:
            if slot:
                gateway.limiter.release()

    async def _exchange(self, down: _Downstream, info: RequestInfo) -> None:
        upstream = await self.gateway.upstream.open(
            self.method, self.path, self.payload, stream=self.stream, quick=not self.generation)
        try:
            info.upstream_status = upstream.status
            if upstream.status >= 400:
                raise upstream_status_error(upstream.status,
                                            await upstream.read_all(MAX_ERROR_BODY))
            if down.format is not None:
                await self._relay_stream(down, info, upstream)
            else:
                await self._relay_whole(down, info, upstream)
            upstream.release()
        finally:
            upstream.close()

    async def _relay_whole(
        self, down: _Downstream, info: RequestInfo, upstream: UpstreamResponse
    ) -> None:
        body = await upstream.read_all(MAX_UPSTREAM_BODY)
        info.first_byte = time.perf_counter()
        try:
            data = json.loads(body)
        except ValueError:
            raise GatewayError(502, "Ollama answered with something that is not JSON",
                               code="upstream_error", reason="upstream_bad_json") from None
        if isinstance(data, dict):
            account(info, data)
        if self.transform is not None:
            body = json.dumps(self.transform(data), separators=(",", ":")).encode()
        await down.whole(body)

    async def _relay_stream(
        self, down: _Downstream, info: RequestInfo, upstream: UpstreamResponse
    ) -> None:
        tracker = _UsageTracker(info, down.format)
        chunk = await upstream.read_chunk()
        if not chunk:
            raise GatewayError(502, "Ollama ended the response without a body",
                               code="upstream_error", reason="upstream_empty")
        info.first_byte = time.perf_counter()
        await down.start_stream()
        ping = self.gateway.settings.stream_ping_seconds if down.format == SSE else None
        # Bounded: each pass relays bytes or a ping, and the upstream total timeout ends it.
        while chunk:
            tracker.feed(chunk)
            await down.write(chunk)
            while True:
                if ping is None or not down.at_event_boundary:
                    chunk = await upstream.read_chunk()
                    break
                try:
                    async with asyncio.timeout(ping):
                        chunk = await upstream.read_chunk()
                    break
                except TimeoutError:
                    await down.write(b": ping\n\n")
        await down.finish()
