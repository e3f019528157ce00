"""A proxied exchange with Ollama, as an ASGI response: admission, upstream call, pass-through.

One ProxyCall serves one request. Three things run at once and the first to finish decides:

  work      take a concurrency slot (generations only), call Ollama, relay the answer; it runs
            in the request's own task, which the other two cancel (saying why)
  watcher   wait for http.disconnect from the client (a task)
  deadline  the drain deadline (app.drain; a future)

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

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:  # bounded by the connection: it ends with http.disconnect
        message = await receive()
        if message["type"] == "http.disconnect":
            return


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
        self.tail = chunk[-2:] if len(chunk) >= 2 else (self.tail + chunk)[-2:]
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


def _has_marker(data: bytes, end: int) -> bool:
    """A line worth a JSON parse: Ollama's final object, an OpenAI usage block, an error."""
    return (data.find(b'"done":true', 0, end) >= 0 or data.find(b'"done": true', 0, end) >= 0
            or data.find(b'"usage"', 0, end) >= 0 or data.find(b'"error"', 0, end) >= 0)


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
        data = self.partial + chunk if self.partial else chunk
        end = data.rfind(b"\n") + 1  # complete lines are data[:end]; 0 when there is none
        self.partial = data[end:]
        if len(self.partial) > _MAX_TRACKED_LINE:
            self.enabled = False  # a pathological line: stop looking, keep relaying
            self.partial = b""
        # Most chunks carry one token and no marker: a scan for each marker, no split, no copy.
        if end and _has_marker(data, end):
            for line in data[:end].split(b"\n"):
                if _has_marker(line, len(line)):
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
        # `work` runs in this task (no task of its own: one hop less of the event loop before
        # the upstream request goes out); the watcher and the deadline cancel it, saying why.
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        why: list[str] = []
        ended = False

        def interrupt(reason: str) -> None:
            if not ended and not why:
                why.append(reason)
                task.cancel()

        watcher = asyncio.create_task(_wait_for_disconnect(receive))
        watcher.add_done_callback(lambda t: t.cancelled() or interrupt("client"))
        deadline = drain.watch()
        deadline.add_done_callback(lambda f: f.cancelled() or interrupt("deadline"))
        try:
            await self._work(down, info)
        except asyncio.CancelledError:
            if not why or task.uncancel() > cancelling:
                # The server cancelled the request (its own graceful-shutdown limit ran out
                # before ours, which should not happen): still try to end the stream with an
                # error. (_work's cleanup has run: the slot is free, the upstream closed.)
                info.reason = info.reason or "cancelled_by_server"
                with contextlib.suppress(Exception):
                    await down.fail(GatewayError(503, "the gateway is shutting down",
                                                 code="shutting_down"))
                raise
            if why[0] == "client":
                info.disconnected = True
                info.reason = "client_disconnected"
            else:
                info.reason = "cut_at_shutdown"
                await down.fail(GatewayError(
                    503, "the gateway is shutting down: the stream was cut at the end of the "
                    "grace period", code="shutting_down"))
        finally:
            ended = True
            watcher.cancel()
            drain.unwatch(deadline)

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
        if down.format != SSE:
            # Bounded: each pass relays bytes, and the upstream total timeout ends it.
            while chunk:
                tracker.feed(chunk)
                await down.write(chunk)
                chunk = await upstream.read_chunk()
            await down.finish()
            return
        pings = _Pings(self.gateway.settings.stream_ping_seconds)
        try:
            # Bounded: each pass relays bytes or a ping, and the upstream total timeout ends it.
            while chunk:
                tracker.feed(chunk)
                await down.write(chunk)
                pings.touch()
                while True:
                    try:
                        chunk = await pings.read(upstream, down.at_event_boundary)
                        break
                    except asyncio.CancelledError:
                        if not pings.fired():
                            raise
                        await down.write(b": ping\n\n")
                        pings.touch()
        finally:
            pings.close()
        await down.finish()


class _Pings:
    """When to send `: ping` on an SSE stream: after `interval` s without a byte sent, and only
    while waiting for Ollama at an event boundary.

    The same as wrapping each upstream read in asyncio.timeout(interval) (the read is cancelled,
    nothing is lost: the bytes stay in aiohttp's buffer), without arming and cancelling a timer
    per chunk: one timer per stream, which, when it comes due early (bytes went out since it
    was set), sets itself again for `interval` after the last byte.
    """

    _SLACK = 0.001  # the loop may run a timer this much early (its clock resolution)

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.cancelling = task.cancelling()
        self.last = self.loop.time()
        self.waiting = False  # in read(), at an event boundary: the only time a ping may go
        self.due = False  # this timer cancelled the task for a ping
        self.handle: asyncio.TimerHandle | None = self.loop.call_at(
            self.last + interval, self._expired)

    def touch(self) -> None:
        """Bytes went out now."""
        self.last = self.loop.time()
        if self.handle is None:  # after a ping: set the timer again
            self.handle = self.loop.call_at(self.last + self.interval, self._expired)

    def _expired(self) -> None:
        now = self.loop.time()
        when = self.last + self.interval
        if self.waiting and now + self._SLACK >= when:
            self.handle = None
            self.due = True
            self.task.cancel()
            return
        # Early (bytes went out since), or not waiting at a boundary: look again later.
        self.handle = self.loop.call_at(max(when, now + self.interval * (not self.waiting)),
                                        self._expired)

    async def read(self, upstream: UpstreamResponse, at_event_boundary: bool) -> bytes:
        self.waiting = at_event_boundary
        try:
            return await upstream.read_chunk()
        finally:
            self.waiting = False

    def fired(self) -> bool:
        """After a CancelledError in read(): True if it was (only) this timer's, for a ping."""
        if not self.due:
            return False
        self.due = False
        # Another cancellation on top of ours (client gone, drain deadline) wins.
        return self.task.uncancel() <= self.cancelling

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
