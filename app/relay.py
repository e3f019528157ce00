"""The pieces of a proxied exchange that touch bytes and clocks (app.proxy puts them together).

  Downstream  the client side: what was sent, how to end it (a terminal error line or event),
              and how long the current write has been blocked
  LineRelay   forwards whole lines only, reads Ollama's token counts and end marker from them,
              and rewrites Ollama's in-stream error lines (scrubbed, with the request id)
  Watchdog    one timer per exchange: the exchange deadline and the client write bound
  Pings       when an OpenAI stream gets a `: ping` comment
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from app.context import RequestInfo
from app.errors import OLLAMA, OPENAI, GatewayError, error_payload, scrub, send_error
from app.upstream import UpstreamResponse

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
JSON = "application/json"
MAX_LINE = 1024 * 1024  # a longer line is relayed as it comes, unread (the stream goes on)

Send = Callable[[dict[str, Any]], Any]


class Downstream:
    """The client side of the exchange: knows what it has sent, so it can end it properly."""

    def __init__(self, send: Send, info: RequestInfo, stream_format: str | None) -> None:
        self.send = send
        self.info = info
        self.format = stream_format
        self.started = False
        self.finished = False
        self.tail = b"\n\n"
        # time.monotonic() when the write in progress began; None between writes. The Watchdog
        # reads it: a write that does not return means the client's socket buffers are full.
        self.writing_since: float | None = None

    @property
    def at_event_boundary(self) -> bool:
        return self.tail.endswith(b"\n\n")

    async def _send(self, message: dict[str, Any]) -> None:
        self.writing_since = time.monotonic()
        await self.send(message)
        self.writing_since = None

    async def start_stream(self) -> None:
        assert self.format is not None
        self.started = True
        await self._send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", self.format.encode())],
        })

    async def write(self, chunk: bytes) -> None:
        self.tail = chunk[-2:] if len(chunk) >= 2 else (self.tail + chunk)[-2:]
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def finish(self) -> None:
        if not self.finished:
            self.finished = True
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def whole(self, body: bytes) -> None:
        self.started = self.finished = True
        await self._send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        })
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

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
            self.writing_since = time.monotonic()
            await send_error(self.send, self.info.style, error, self.info.request_id,
                             close=close)
            self.writing_since = None
            return
        await self.write(self._terminal(error))
        await self.finish()


def _has_marker(data: bytes, end: int, sse: bool) -> bool:
    """A line worth a JSON parse: Ollama's final object, an OpenAI usage block, an error, and
    on SSE the end marker."""
    return (data.find(b'"done":true', 0, end) >= 0 or data.find(b'"done": true', 0, end) >= 0
            or data.find(b'"usage"', 0, end) >= 0 or data.find(b'"error"', 0, end) >= 0
            or (sse and data.find(b"[DONE]", 0, end) >= 0))


class LineRelay:
    """Forwards whole lines only, and reads the few lines that matter without parsing the rest.

    A partial line is held back until its newline arrives (Ollama writes whole lines, so this
    costs nothing in practice), which lets an in-stream error line be rewritten whole: Ollama
    ends a failed stream with `{"error": "..."}` (NDJSON) or `data: {"error": {...}}` (SSE),
    whose message may hold server paths; the client gets it scrubbed, with the request id.
    `done` says whether the stream's end marker went by (Ollama's `"done": true` object, or
    `data: [DONE]` on SSE), `errored` whether an error line did; `tracking` turns off for a
    pathological line longer than MAX_LINE (that line and the rest are relayed unread).
    """

    def __init__(self, info: RequestInfo, stream_format: str | None) -> None:
        self.info = info
        self.sse = stream_format == SSE
        self.partial = b""
        self.tracking = True
        self.done = False
        self.errored = False

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send now (whole lines); b"" while a line is incomplete."""
        if not self.tracking:
            return chunk
        data = self.partial + chunk if self.partial else chunk
        end = data.rfind(b"\n") + 1  # complete lines are data[:end]; 0 when there is none
        if end != len(data):
            self.partial = data[end:]
            if len(self.partial) > MAX_LINE:
                self.tracking = False  # relay as it comes from here on
                self.partial = b""
                return data
            data = data[:end]
        elif self.partial:
            self.partial = b""
        # Most chunks carry one token and no marker: a scan for each marker, no split, no copy.
        if end and _has_marker(data, end, self.sse):
            return self._lines(data)
        return data

    def flush(self) -> bytes:
        """At the end of the body: what is left (an unterminated last line), read as a line."""
        rest, self.partial = self.partial, b""
        if rest and self.tracking and _has_marker(rest, len(rest), self.sse):
            return self._lines(rest)
        return rest

    def _lines(self, data: bytes) -> bytes:
        lines = data.split(b"\n")
        changed = False
        for index, line in enumerate(lines):
            if _has_marker(line, len(line), self.sse):
                rewritten = self._line(line)
                if rewritten is not None:
                    lines[index] = rewritten
                    changed = True
        return b"\n".join(lines) if changed else data

    def _line(self, line: bytes) -> bytes | None:
        text = line
        if self.sse:
            if not line.startswith(b"data:"):
                return None
            text = line[5:].strip()
            if text == b"[DONE]":
                self.done = True
                return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        account(self.info, data)
        if not self.sse and data.get("done") is True:
            self.done = True
        error = data.get("error")
        if error is None:
            return None
        self.errored = True
        if isinstance(error, dict):
            error = error.get("message")
        message = "Ollama failed: " + scrub(error if isinstance(error, str) else "error")
        style = OPENAI if self.sse else OLLAMA
        payload = error_payload(style, 502, message, self.info.request_id, "upstream_error")
        out = json.dumps(payload, separators=(",", ":")).encode()
        return b"data: " + out if self.sse else out


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


def check_stream_start(upstream: UpstreamResponse, stream_format: str) -> None:
    """Before the first byte goes to the client: a 2xx answer of the media type a stream has.

    Ollama streams NDJSON on /api/* and SSE on its OpenAI routes (docs/api.md "Streaming
    responses", docs/openai.md); a load-only request (no messages / empty prompt) gets one
    application/json object (docs/api.md "Load a model"), which is also a valid NDJSON body.
    Anything else (a redirect, an HTML error page from something in between) is not Ollama's
    stream: 502 in the route's shape, instead of a 200 that carries it.
    """
    if not 200 <= upstream.status < 300:
        raise GatewayError(502, f"Ollama answered with status {upstream.status}",
                           code="upstream_error", reason=f"upstream_{upstream.status}")
    allowed = (SSE,) if stream_format == SSE else (NDJSON, JSON)
    if upstream.content_type not in allowed:
        raise GatewayError(502, "Ollama answered a streaming request with "
                           f"{scrub(upstream.content_type)[:60]!r}, not a stream",
                           code="upstream_error", reason="upstream_bad_content_type")


class Watchdog:
    """The exchange deadline and the client write bound, on one timer per exchange.

    `deadline`: seconds from now (the slot was just taken) to the last byte written.
    `write_bound`: the longest one write to the client may block (Downstream.writing_since).
    When either passes, `fire(reason)` is called once ("exchange_deadline" or
    "client_write_timeout"). The timer wakes at the earliest moment either could pass and sets
    itself again otherwise, so a stream of fast writes costs no timer per write.
    """

    _SLACK = 0.001  # the loop may run a timer this much early (its clock resolution)

    def __init__(self, down: Downstream, deadline: float, write_bound: float,
                 fire: Callable[[str], None]) -> None:
        self.down = down
        self.loop = asyncio.get_running_loop()
        # time.monotonic() throughout (what Downstream records); the loop's own clock may be
        # coarser (uvloop: milliseconds, cached per iteration), so only delays go to it.
        self.deadline = time.monotonic() + deadline
        self.write_bound = write_bound
        self.fire = fire
        self.handle: asyncio.TimerHandle | None = self.loop.call_later(
            min(deadline, write_bound), self._check)

    def _check(self) -> None:
        self.handle = None
        now = time.monotonic() + self._SLACK
        if now >= self.deadline:
            self.fire("exchange_deadline")
            return
        since = self.down.writing_since
        if since is not None and now - since >= self.write_bound:
            self.fire("client_write_timeout")
            return
        start = since if since is not None else now
        due = min(self.deadline, start + self.write_bound)
        self.handle = self.loop.call_later(max(due - now, self._SLACK), self._check)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class Pings:
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
