"""A proxied exchange with Ollama, as an ASGI response: admission, upstream call, pass-through.

One ProxyCall serves one request. What may end it, the first to happen deciding:

  work      take a concurrency slot (generations only), call Ollama, relay the answer; it runs
            in the request's own task, which the others cancel (saying why)
  watcher   http.disconnect from the client (a task)
  drain     the drain deadline (app.drain; a future)
  watchdog  from the moment the slot is taken: the exchange deadline (the budget's longest
            generation, writes to the client included) and the client write bound (one write
            blocked that long: a client that stopped reading) (app.relay.Watchdog)

Whatever cancels `work`, its cleanup closes the upstream connection (Ollama stops generating)
and frees the slot. The watchdog's two reasons also drop the client connection: a client that
does not read cannot be told, and a pending write must not keep the connection (and its
buffers) alive. The access log's `reason` names which one fired.

The response status is decided only when Ollama's first body byte arrives (Ollama sends its
headers with it), so a failure before that is a proper status (503/504/502/4xx) in the route's
error shape; a streaming answer must be 2xx and of a stream's media type (app.relay.
check_stream_start). After the first byte, a failure ends the stream with a terminal error line
(NDJSON) or error event (SSE) and a clean end of the body; so does a stream that ends without
its end marker. OpenAI streams get a `: ping` comment during silences, only after the first
byte and only between two events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from app.context import RequestInfo, info_of
from app.errors import OPENAI, GatewayError
from app.relay import (
    NDJSON,
    SSE,
    Downstream,
    LineRelay,
    Pings,
    Watchdog,
    account,
    check_stream_start,
)
from app.upstream import MAX_ERROR_BODY, UpstreamResponse, upstream_status_error

if TYPE_CHECKING:
    from app.runtime import Gateway

MAX_UPSTREAM_BODY = 64 * 1024 * 1024
# The watchdog's deadline runs a little past the upstream total timeout (both start at about
# the same moment), so a slow Ollama is reported as Ollama's timeout (504), not as ours.
_DEADLINE_MARGIN_SECONDS = 0.25
# After the deadline, the terminal error to a client that reads gets this long to go out.
_LAST_WORD_SECONDS = 1.0

Scope = MutableMapping[str, Any]  # starlette.types.Scope: what Response.__call__ takes
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:  # bounded by the connection: it ends with http.disconnect
        message = await receive()
        if message["type"] == "http.disconnect":
            return


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
        down = Downstream(send, info, self._stream_format(info))
        drain = self.gateway.drain
        # `work` runs in this task (no task of its own: one hop less of the event loop before
        # the upstream request goes out); the others cancel it, saying why.
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        why: list[str] = []
        ended = False

        def interrupt(reason: str) -> None:
            if not ended and not why:
                why.append(reason)
                task.cancel()

        def on_disconnect(watched: asyncio.Future[Any]) -> None:
            if not watched.cancelled():
                interrupt("client")

        def on_deadline(watched: asyncio.Future[Any]) -> None:
            if not watched.cancelled():
                interrupt("deadline")

        watcher = asyncio.create_task(_wait_for_disconnect(receive))
        watcher.add_done_callback(on_disconnect)
        deadline = drain.watch()
        deadline.add_done_callback(on_deadline)
        watchdogs: list[Watchdog] = []
        try:
            await self._work(down, info, lambda: watchdogs.append(self._watchdog(down,
                                                                                 interrupt)))
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
            elif why[0] == "deadline":
                info.reason = "cut_at_shutdown"
                await down.fail(GatewayError(
                    503, "the gateway is shutting down: the stream was cut at the end of the "
                    "grace period", code="shutting_down"))
            else:
                await self._cut(down, info, why[0])
        finally:
            ended = True
            watcher.cancel()
            drain.unwatch(deadline)
            for watchdog in watchdogs:
                watchdog.close()

    def _watchdog(self, down: Downstream, interrupt: Callable[[str], None]) -> Watchdog:
        settings = self.gateway.settings
        return Watchdog(down, settings.upstream_total_timeout_seconds + _DEADLINE_MARGIN_SECONDS,
                        settings.client_write_timeout_seconds, interrupt)

    async def _cut(self, down: Downstream, info: RequestInfo, reason: str) -> None:
        """The watchdog fired (the slot is already free, the upstream closed): end the exchange.

        A write was blocked (the client is not reading): drop the connection at once. Otherwise
        (the deadline passed while Ollama was still answering) the client gets a terminal error
        if it takes it within a second, and the connection is dropped if it does not.
        """
        info.reason = reason
        if reason == "client_write_timeout" or down.writing_since is not None:
            info.abort_connection()
            return
        limit = self.gateway.settings.upstream_total_timeout_seconds
        error = GatewayError(504, f"the exchange took longer than {limit:g} s",
                             code="upstream_timeout", reason=reason)
        try:
            async with asyncio.timeout(_LAST_WORD_SECONDS):
                await down.fail(error)
        except TimeoutError:
            info.abort_connection()

    async def _work(self, down: Downstream, info: RequestInfo,
                    admitted: Callable[[], None]) -> None:
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
            admitted()
            await self._exchange(down, info)
        except GatewayError as error:
            info.reason = info.reason or error.reason
            await down.fail(error, close=gateway.drain.draining)
        finally:
            if slot:
                gateway.limiter.release()

    async def _exchange(self, down: Downstream, info: RequestInfo) -> None:
        upstream = await self.gateway.upstream.open(
            self.method, self.path, self.payload, stream=self.stream, quick=not self.generation)
        try:
            info.upstream_status = upstream.status
            if upstream.status >= 400:
                raise upstream_status_error(upstream.status,
                                            await upstream.read_all(MAX_ERROR_BODY))
            if down.format is not None:
                check_stream_start(upstream, down.format)
                await self._relay_stream(down, info, upstream)
            else:
                if not 200 <= upstream.status < 300:
                    raise GatewayError(502, f"Ollama answered with status {upstream.status}",
                                       code="upstream_error",
                                       reason=f"upstream_{upstream.status}")
                await self._relay_whole(down, info, upstream)
            upstream.release()
        finally:
            upstream.close()

    async def _relay_whole(
        self, down: Downstream, info: RequestInfo, upstream: UpstreamResponse
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
        self, down: Downstream, info: RequestInfo, upstream: UpstreamResponse
    ) -> None:
        lines = LineRelay(info, down.format)
        chunk = await upstream.read_chunk()
        if not chunk:
            raise GatewayError(502, "Ollama ended the response without a body",
                               code="upstream_error", reason="upstream_empty")
        info.first_byte = time.perf_counter()
        await down.start_stream()
        if down.format != SSE:
            # Bounded: each pass relays bytes, and the upstream total timeout ends it.
            while chunk:
                out = lines.feed(chunk)
                if out:
                    await down.write(out)
                chunk = await upstream.read_chunk()
        else:
            pings = Pings(self.gateway.settings.stream_ping_seconds)
            try:
                # Bounded: each pass relays bytes or a ping, and the upstream total timeout
                # ends it.
                while chunk:
                    out = lines.feed(chunk)
                    if out:
                        await down.write(out)
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
        await self._end_stream(down, lines)

    @staticmethod
    async def _end_stream(down: Downstream, lines: LineRelay) -> None:
        rest = lines.flush()
        if rest:
            await down.write(rest)
        if lines.tracking and not lines.done and not lines.errored:
            # Ollama closed the body cleanly but without its end marker: to the client this
            # would look like a complete answer.
            raise GatewayError(502, "Ollama ended the stream before its final message",
                               code="upstream_error", reason="upstream_truncated")
        await down.finish()
