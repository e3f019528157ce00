"""A bounded streaming load generator (run as its own process, loopback only).

    python -m bench.load --base http://127.0.0.1:PORT --route ollama|openai \
        --concurrency 16 --requests 320 [--key KEY] [--deadline 60] [--client light|aiohttp] \
        [--payload '{"max_tokens": 32}'] [--close] [--pause 0.1]

Prints one JSON object: requests, errors, wall seconds, requests/s, tokens/s, time to first
token / total latency percentiles in milliseconds, and the load generator's own CPU time per
request. Every request is a streaming chat; --payload merges a JSON object into its body (the
model name and llama.cpp's options for the real-model row, bench/realmodel.py); --close sends
`Connection: close`, one connection per request (llama.cpp's server drops some reused
keep-alive connections: see bench/realmodel.py); --pause waits that long between a stream's
requests.

The load generator shares the machine with what it measures, so its own CPU is part of the
noise. The default client ("light") is a small HTTP/1.1 keep-alive client: one connection per
worker, the response parsed by httptools (the C parser uvicorn uses), on uvloop, tokens counted
with byte counts instead of a JSON parse per line. "aiohttp" is the aiohttp.ClientSession
client the first version of this harness used (about twice the CPU per request). Both time a
request from just before it is written to the socket: time to first token is the first body
byte, total latency the end of the body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlparse

import aiohttp
import httptools
import uvloop

MODEL = "llama3.2:1b"
ROUTES = {
    "ollama": ("/api/chat", {"model": MODEL, "stream": True,
                             "messages": [{"role": "user", "content": "benchmark"}]}),
    "openai": ("/v1/chat/completions", {"model": MODEL, "stream": True,
                                        "messages": [{"role": "user", "content": "benchmark"}]}),
}


def request_for(route: str, extra: dict | None = None) -> tuple[str, dict]:
    path, payload = ROUTES[route]
    return path, {**payload, **(extra or {})}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def count_tokens(route: str, body: bytes) -> int:
    """Content chunks in a streamed answer, counted on bytes (JSON never holds a raw newline).

    Ollama NDJSON: one object per line; every line but the final `"done": true` one is a token.
    OpenAI SSE: one `data: ` event per chunk; every event but `data: [DONE]` counts (the
    finish_reason chunk included, in both the direct and the gateway run).
    """
    if route == "ollama":
        lines = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
        return lines - body.count(b'"done": true') - body.count(b'"done":true')
    events = body.count(b"\ndata: ") + (1 if body.startswith(b"data: ") else 0)
    return events - body.count(b"data: [DONE]")


class _Exchange(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[bool] | None = None
        self.first: float | None = None
        self.body = bytearray()
        self.closed = False
        self.keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(False)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(False)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.body += body

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # only valid until the call returns
        self._finish(self.parser.get_status_code() == 200)

    def _finish(self, ok: bool) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(ok)

    async def request(self, raw: bytes) -> bool:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.first = None
        self.body = bytearray()
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(raw)
        ok = await self.done
        if not self.keep_alive:
            self.transport.close()
            self.closed = True
        return ok


def _raw_request(host: str, port: int, path: str, payload: dict, key: str | None,
                 close: bool = False) -> bytes:
    body = json.dumps(payload).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Accept: */*"]
    if close:
        head.append("Connection: close")
    if key:
        head.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _light(base: str, route: str, concurrency: int, requests: int, key: str | None,
                 deadline: float, record, ramp: float = 0.0, extra: dict | None = None,
                 close: bool = False, pause: float = 0.0) -> None:
    url = urlparse(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path, payload = request_for(route, extra)
    raw = _raw_request(host, port, path, payload, key, close)
    loop = asyncio.get_running_loop()
    remaining = iter(range(requests))
    stop_at = time.monotonic() + deadline

    async def worker(index: int) -> None:
        conn: _Exchange | None = None
        if ramp:
            await asyncio.sleep(ramp * index / concurrency)
        for _ in remaining:
            left = stop_at - time.monotonic()
            if left <= 0:
                break
            start = time.perf_counter()
            try:
                async with asyncio.timeout(left):
                    if conn is None or conn.closed:
                        _, conn = await loop.create_connection(_Exchange, host, port)
                    ok = await conn.request(raw)
            except (TimeoutError, OSError):
                ok = False
            end = time.perf_counter()
            if conn is not None and not ok:
                if conn.transport is not None:
                    conn.transport.abort()
                conn.closed = True
            first = conn.first if conn is not None else None
            record(ok and first is not None, start, first, end,
                   bytes(conn.body) if conn is not None else b"")
            if pause:
                await asyncio.sleep(pause)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))


async def _aiohttp(base: str, route: str, concurrency: int, requests: int, key: str | None,
                   deadline: float, record, ramp: float = 0.0, extra: dict | None = None,
                   close: bool = False, pause: float = 0.0) -> None:
    path, payload = request_for(route, extra)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    remaining = iter(range(requests))
    stop_at = time.monotonic() + deadline
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=close)
    timeout = aiohttp.ClientTimeout(total=deadline)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(index: int) -> None:
            if ramp:
                await asyncio.sleep(ramp * index / concurrency)
            for _ in remaining:
                if time.monotonic() > stop_at:
                    return
                start = time.perf_counter()
                first = None
                body = bytearray()
                try:
                    async with session.post(base + path, json=payload, headers=headers) as resp:
                        async for chunk in resp.content.iter_any():
                            if first is None:
                                first = time.perf_counter()
                            body += chunk
                        ok = resp.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                record(ok and first is not None, start, first, time.perf_counter(), bytes(body))
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))


async def run(base: str, route: str, concurrency: int, requests: int, key: str | None,
              deadline: float, client: str = "light", ramp: float = 0.0,
              extra: dict | None = None, close: bool = False, pause: float = 0.0) -> dict:
    host = urlparse(base).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load {host}: loopback only")
    ttfts: list[float] = []
    totals: list[float] = []
    tokens: list[int] = []
    errors = 0

    def record(ok: bool, start: float, first: float | None, end: float, body: bytes) -> None:
        nonlocal errors
        if not ok or first is None:
            errors += 1
            return
        ttfts.append((first - start) * 1000)
        totals.append((end - start) * 1000)
        tokens.append(count_tokens(route, body))

    drive = _light if client == "light" else _aiohttp
    cpu_before = time.process_time()
    started = time.perf_counter()
    await drive(base, route, concurrency, requests, key, deadline, record, ramp, extra, close,
                pause)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    done = len(totals)
    return {
        "requests": done, "errors": errors, "wall_s": wall,
        "requests_per_s": done / wall if wall else 0.0,
        "tokens_per_s": sum(tokens) / wall if wall else 0.0,
        "tokens_per_request": statistics.mean(tokens) if tokens else 0.0,
        "ttft_p50_ms": percentile(ttfts, 50), "ttft_p99_ms": percentile(ttfts, 99),
        "total_p50_ms": percentile(totals, 50), "total_p99_ms": percentile(totals, 99),
        "client_cpu_ms_per_request": cpu / max(done + errors, 1) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--route", choices=sorted(ROUTES), required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--key")
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--client", choices=("light", "aiohttp"), default="light")
    parser.add_argument("--ramp", type=float, default=0.0,
                        help="seconds over which the streams' first requests are spread")
    parser.add_argument("--payload", type=json.loads, default=None,
                        help="a JSON object merged into every request body")
    parser.add_argument("--close", action="store_true",
                        help="one connection per request (Connection: close)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds between two requests of one stream")
    args = parser.parse_args(argv)
    if args.payload is not None and not isinstance(args.payload, dict):
        parser.error("--payload must be a JSON object, e.g. '{\"max_tokens\": 32}'")
    work = run(args.base, args.route, args.concurrency, args.requests, args.key, args.deadline,
               args.client, args.ramp, args.payload, args.close, args.pause)
    # The first harness ran aiohttp on the default asyncio loop: kept as it was, to compare.
    result = uvloop.run(work) if args.client == "light" else asyncio.run(work)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
