"""The stream relay in isolation (no server): pings on SSE, token accounting, cancellation.

A scripted upstream stands in for aiohttp's response (chunks after chosen silences) and a
recording `send` for the server, so the timing rules can be checked to the millisecond.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from app.context import SCOPE_KEY, RequestInfo
from app.drain import Drain
from app.errors import OLLAMA, OPENAI, GatewayError
from app.limits import ConcurrencyLimiter
from app.proxy import ProxyCall
from app.relay import NDJSON, SSE, Downstream, LineRelay, check_stream_start


class ScriptedUpstream:
    """read_chunk() returns each (silence, bytes) once the silence since the previous chunk has
    passed, then b"" (the end). A read cancelled meanwhile loses nothing, as with aiohttp."""

    status = 200

    def __init__(self, script: list[tuple[float, bytes]], content_type: str = NDJSON) -> None:
        self.script = list(script)
        self.content_type = content_type
        self.due: float | None = None
        self.closed = False

    def release(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def read_chunk(self) -> bytes:
        if not self.script:
            return b""
        silence, chunk = self.script[0]
        loop = asyncio.get_running_loop()
        if self.due is None:
            self.due = loop.time() + silence
        await asyncio.sleep(max(0.0, self.due - loop.time()))
        self.script.pop(0)
        self.due = None
        return chunk


def relay(style: str, script: list[tuple[float, bytes]], ping: float = 0.05):
    info = RequestInfo("req", "POST", "/x", style)
    sent: list[tuple[float, bytes]] = []
    started = time.monotonic()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append((time.monotonic() - started, message.get("body", b"")))

    down = Downstream(send, info, SSE if style == OPENAI else NDJSON)
    gateway = SimpleNamespace(settings=SimpleNamespace(stream_ping_seconds=ping))
    call = ProxyCall(gateway, "POST", "/x", stream=True)  # type: ignore[arg-type]
    return call, down, info, ScriptedUpstream(script), sent


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def event(n: int) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"tok%d "}}]}\n\n' % n


def test_sse_pings_during_a_silence_between_events():
    call, down, info, upstream, sent = relay(OPENAI, [
        (0, event(0)), (0.28, event(1)), (0, b"data: [DONE]\n\n")])
    run(call._relay_stream(down, info, upstream))
    bodies = [body for _, body in sent]
    pings = [when for when, body in sent if body == b": ping\n\n"]
    assert bodies[0] == event(0) and bodies[-2:] == [b"data: [DONE]\n\n", b""]
    assert 4 <= len(pings) <= 5  # 0.28 s of silence, one ping per 0.05 s
    assert pings[0] >= 0.045
    assert all(b - a >= 0.045 for a, b in zip(pings, pings[1:], strict=False))
    assert b"".join(bodies).replace(b": ping\n\n", b"") == (
        event(0) + event(1) + b"data: [DONE]\n\n")


def test_no_ping_in_the_middle_of_an_event():
    whole = event(1)
    call, down, info, upstream, sent = relay(OPENAI, [
        (0, event(0) + whole[:10]), (0.2, whole[10:]), (0.12, b"data: [DONE]\n\n")])
    run(call._relay_stream(down, info, upstream))
    bodies = [body for _, body in sent]
    text = b"".join(bodies)
    assert text.replace(b": ping\n\n", b"") == event(0) + whole + b"data: [DONE]\n\n"
    # The half event is held back until it is whole, so the pings during the 0.2 s silence
    # mid-event go between whole events, never inside one.
    assert whole in bodies, "the event went out whole"
    for piece in text.split(b": ping\n\n")[:-1]:
        assert piece == b"" or piece.endswith(b"\n\n")
    _, _, after = text.partition(whole)
    assert after.count(b": ping\n\n") >= 1  # the silence after the event is pinged


def test_a_stream_that_never_goes_silent_is_not_pinged():
    script = [(0.01, event(n)) for n in range(30)] + [(0.01, b"data: [DONE]\n\n")]
    call, down, info, upstream, sent = relay(OPENAI, script, ping=0.05)
    run(call._relay_stream(down, info, upstream))
    assert not [body for _, body in sent if body == b": ping\n\n"]


def test_ndjson_is_never_pinged():
    call, down, info, upstream, sent = relay(OLLAMA, [
        (0, b'{"done":false}\n'), (0.2, b'{"done":true,"eval_count":1}\n')])
    run(call._relay_stream(down, info, upstream))
    assert b"ping" not in b"".join(body for _, body in sent)
    assert info.output_tokens == 1


@pytest.mark.parametrize("when", [0.02, 0.05, 0.075])
def test_a_cancellation_during_a_silence_wins_over_pings(when):
    """The client left (ProxyCall cancels its work task): the relay ends, no ping after it,
    whether the cancellation comes before, at, or between the ping timer's expiries."""
    call, down, info, upstream, sent = relay(OPENAI, [(0, event(0)), (5, event(1))], ping=0.025)

    async def scenario() -> float:
        task = asyncio.create_task(call._relay_stream(down, info, upstream))
        await asyncio.sleep(when)
        task.cancel()
        cancelled_at = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)  # no timer left behind writes anything
        return cancelled_at

    run(scenario())
    assert sent[-1][1] != b""  # not finished normally
    assert len(sent) <= 1 + round(when / 0.025) + 1


def test_usage_is_found_in_a_final_line_split_across_chunks():
    final = b'{"done":true,"prompt_eval_count":7,"eval_count":20}\n'
    call, down, info, upstream, sent = relay(OLLAMA, [
        (0, b'{"done":false}\n' + final[:9]), (0, final[9:30]), (0, final[30:])])
    run(call._relay_stream(down, info, upstream))
    assert (info.prompt_tokens, info.output_tokens) == (7, 20)


def test_openai_usage_block_and_error_are_accounted():
    info = RequestInfo("req", "POST", "/x", OPENAI)
    tracker = LineRelay(info, SSE)
    tracker.feed(event(0) + b'data: {"choices":[],"usage":{"prompt_tokens":3,')
    tracker.feed(b'"completion_tokens":2}}\n\ndata: {"error":{"message":"x"}}\n\n')
    assert (info.prompt_tokens, info.output_tokens) == (3, 2)
    assert info.reason == "upstream_error_in_body"


def test_a_pathological_line_stops_the_accounting_not_the_relay():
    info = RequestInfo("req", "POST", "/x", OLLAMA)
    tracker = LineRelay(info, NDJSON)
    line = b"x" * (1024 * 1024 + 1)
    assert tracker.feed(line) == line, "a pathological line is relayed as it comes"
    assert not tracker.tracking and tracker.partial == b""
    tracker.feed(b'\n{"done":true,"eval_count":3}\n')
    assert info.output_tokens is None


class Exchange:
    """A whole ProxyCall as the server runs it: its own task, receive() and send()."""

    def __init__(self, script: list[tuple[float, bytes]], style: str = OLLAMA,
                 total: float = 30.0, write_bound: float = 30.0) -> None:
        self.upstream = ScriptedUpstream(script, SSE if style == OPENAI else NDJSON)
        upstream = self.upstream

        async def open_upstream(*_: Any, **__: Any) -> ScriptedUpstream:
            return upstream

        self.gateway = SimpleNamespace(
            settings=SimpleNamespace(stream_ping_seconds=10.0, queue_timeout_seconds=1.0,
                                     upstream_total_timeout_seconds=total,
                                     client_write_timeout_seconds=write_bound),
            drain=Drain(5.0), limiter=ConcurrencyLimiter(1),
            upstream=SimpleNamespace(open=open_upstream))
        self.info = RequestInfo("req", "POST", "/x", style)
        self.scope = {"type": "http", SCOPE_KEY: self.info}
        self.disconnect = asyncio.Event()
        self.body = b""
        self.ended = False
        self.block_after: int | None = None  # sends after this many bodies never return
        self.bodies = 0
        self.aborted = 0
        self.info.aborter = self._abort

    def _abort(self) -> None:
        self.aborted += 1

    async def receive(self) -> dict[str, Any]:
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.bodies += 1
            if self.block_after is not None and self.bodies > self.block_after:
                await asyncio.Event().wait()  # a client that stopped reading
            self.body += message.get("body", b"")
            self.ended = not message.get("more_body", False)

    def start(self) -> asyncio.Task[None]:
        call = ProxyCall(self.gateway, "POST", "/x", {}, stream=True,  # type: ignore[arg-type]
                         generation=True)
        return asyncio.create_task(call(self.scope, self.receive, self.send))

    def assert_cleaned_up(self) -> None:
        assert self.upstream.closed and self.gateway.limiter.active == 0
        assert not self.gateway.drain._watchers  # noqa: SLF001


SLOW = [(0, b'{"done":false}\n')] + [(0.05, b'{"done":false}\n')] * 100


def test_a_client_that_leaves_cancels_the_work_and_closes_the_upstream():
    async def scenario(exchange: Exchange) -> None:
        task = exchange.start()
        await asyncio.sleep(0.12)
        exchange.disconnect.set()
        await asyncio.wait_for(task, 1)  # ends normally: the server's task is not cancelled

    exchange = Exchange(SLOW)
    run(scenario(exchange))
    assert exchange.info.disconnected and exchange.info.reason == "client_disconnected"
    assert not exchange.ended
    exchange.assert_cleaned_up()


def test_the_drain_deadline_cuts_the_stream_with_a_terminal_error():
    async def scenario(exchange: Exchange) -> None:
        task = exchange.start()
        await asyncio.sleep(0.12)
        exchange.gateway.drain.cut()
        await asyncio.wait_for(task, 1)

    exchange = Exchange(SLOW)
    run(scenario(exchange))
    assert exchange.info.reason == "cut_at_shutdown" and exchange.ended
    assert b"the stream was cut" in exchange.body.splitlines()[-1]
    exchange.assert_cleaned_up()


@pytest.mark.parametrize("also_disconnected", [False, True])
def test_a_cancellation_by_the_server_still_ends_the_stream_and_propagates(also_disconnected):
    async def scenario(exchange: Exchange) -> None:
        task = exchange.start()
        await asyncio.sleep(0.12)
        if also_disconnected:
            exchange.disconnect.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)

    exchange = Exchange(SLOW)
    run(scenario(exchange))
    assert exchange.info.reason == "cancelled_by_server" and exchange.ended
    exchange.assert_cleaned_up()


def test_a_finished_exchange_ignores_the_disconnect_that_follows():
    async def scenario(exchange: Exchange) -> None:
        task = exchange.start()
        await asyncio.wait_for(task, 1)
        exchange.disconnect.set()  # uvicorn's receive() says so once the response is complete
        await asyncio.sleep(0.01)

    exchange = Exchange([(0, b'{"done":false}\n'), (0, b'{"done":true,"eval_count":1}\n')])
    run(scenario(exchange))
    assert exchange.ended and not exchange.info.disconnected and exchange.info.reason is None
    assert exchange.info.output_tokens == 1
    exchange.assert_cleaned_up()


def test_the_exchange_deadline_ends_a_stream_waiting_on_ollama_with_a_terminal_error():
    """Deadline = total timeout + 0.25 s from the slot; the client reads, so it is told."""
    async def scenario(exchange: Exchange) -> float:
        started = time.monotonic()
        await asyncio.wait_for(exchange.start(), 3)
        return time.monotonic() - started

    exchange = Exchange([(0, b'{"done":false}\n'), (10, b'{"done":true}\n')], total=0.2)
    elapsed = run(scenario(exchange))
    assert 0.4 < elapsed < 1.5
    assert exchange.info.reason == "exchange_deadline" and exchange.ended
    last = json.loads(exchange.body.splitlines()[-1])
    assert last["error"].startswith("the exchange took longer than 0.2 s")
    assert exchange.aborted == 0
    exchange.assert_cleaned_up()


def test_the_write_bound_drops_a_client_that_stopped_reading():
    async def scenario(exchange: Exchange) -> float:
        started = time.monotonic()
        await asyncio.wait_for(exchange.start(), 3)
        return time.monotonic() - started

    exchange = Exchange(SLOW, write_bound=0.2)
    exchange.block_after = 2
    elapsed = run(scenario(exchange))
    assert 0.2 < elapsed < 1.0
    assert exchange.info.reason == "client_write_timeout"
    assert exchange.aborted == 1 and not exchange.ended
    exchange.assert_cleaned_up()


def test_an_error_line_split_across_chunks_is_rewritten_whole():
    info = RequestInfo("rid", "POST", "/x", OLLAMA)
    lines = LineRelay(info, NDJSON)
    out = lines.feed(b'{"done":false}\n{"error":"failed at /opt/ol')
    assert out == b'{"done":false}\n'
    out += lines.feed(b'lama/lib/x.so"}\n') + lines.flush()
    last = json.loads(out.splitlines()[-1])
    assert last == {"error": "Ollama failed: failed at <path>", "request_id": "rid"}
    assert lines.errored and not lines.done


def test_an_unterminated_last_object_is_read_at_the_end():
    """Ollama answers a load-only request with one JSON object without a newline."""
    lines = LineRelay(RequestInfo("r", "POST", "/x", OLLAMA), NDJSON)
    assert lines.feed(b'{"done":true,"done_reason":"load"}') == b""
    assert lines.flush() == b'{"done":true,"done_reason":"load"}' and lines.done


@pytest.mark.parametrize(("status", "content_type", "stream_format", "ok"), [
    (200, NDJSON, NDJSON, True),
    (200, "application/json", NDJSON, True),
    (200, "application/json", SSE, False),
    (200, SSE, SSE, True),
    (200, "text/html", NDJSON, False),
    (307, NDJSON, NDJSON, False),
    (204, NDJSON, NDJSON, True),
])
def test_check_stream_start(status, content_type, stream_format, ok):
    upstream = SimpleNamespace(status=status, content_type=content_type)
    if ok:
        check_stream_start(upstream, stream_format)  # type: ignore[arg-type]
    else:
        with pytest.raises(GatewayError) as caught:
            check_stream_start(upstream, stream_format)  # type: ignore[arg-type]
        assert caught.value.status == 502
