"""A bounded streaming load generator (run as its own process, loopback only).

    python -m bench.load --base http://127.0.0.1:PORT --route ollama|openai \
        --concurrency 16 --requests 320 [--key KEY] [--deadline 60]

Prints one JSON object: requests, errors, wall seconds, requests/s, tokens/s, and time to
first token / total latency percentiles in milliseconds. Every request is a streaming chat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlparse

import aiohttp

MODEL = "llama3.2:1b"
ROUTES = {
    "ollama": ("/api/chat", {"model": MODEL, "stream": True,
                             "messages": [{"role": "user", "content": "benchmark"}]}),
    "openai": ("/v1/chat/completions", {"model": MODEL, "stream": True,
                                        "messages": [{"role": "user", "content": "benchmark"}]}),
}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def count_tokens(route: str, body: bytes) -> int:
    if route == "ollama":
        return sum(1 for line in body.splitlines()
                   if line.strip() and not json.loads(line).get("done"))
    return sum(1 for line in body.splitlines()
               if line.startswith(b"data: ") and line != b"data: [DONE]")


async def run(base: str, route: str, concurrency: int, requests: int, key: str | None,
              deadline: float) -> dict:
    host = urlparse(base).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load {host}: loopback only")
    path, payload = ROUTES[route]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    ttfts, totals, tokens = [], [], []
    errors = 0
    remaining = iter(range(requests))
    stop_at = time.monotonic() + deadline
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=deadline)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal errors
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
                end = time.perf_counter()
                if not ok or first is None:
                    errors += 1
                    continue
                ttfts.append((first - start) * 1000)
                totals.append((end - start) * 1000)
                tokens.append(count_tokens(route, bytes(body)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    done = len(totals)
    return {
        "requests": done, "errors": errors, "wall_s": wall,
        "requests_per_s": done / wall if wall else 0.0,
        "tokens_per_s": sum(tokens) / wall if wall else 0.0,
        "tokens_per_request": statistics.mean(tokens) if tokens else 0.0,
        "ttft_p50_ms": percentile(ttfts, 50), "ttft_p99_ms": percentile(ttfts, 99),
        "total_p50_ms": percentile(totals, 50), "total_p99_ms": percentile(totals, 99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--route", choices=sorted(ROUTES), required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--key")
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.base, args.route, args.concurrency, args.requests, args.key,
                             args.deadline))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
