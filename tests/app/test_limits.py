"""The concurrency bound: a short bounded wait, then 429 with Retry-After (never 503)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from app.limits import ConcurrencyLimiter
from tests.app.harness import AUTH, figure

GENERATE = {"prompt": "hello"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_slots_are_taken_up_to_the_limit_then_callers_wait():
    async def scenario():
        limiter = ConcurrencyLimiter(2)
        assert await limiter.acquire(0) and await limiter.acquire(0)
        assert not await limiter.acquire(0)
        started = time.monotonic()
        assert not await limiter.acquire(0.2)
        assert 0.19 <= time.monotonic() - started < 0.3
        assert limiter.active == 2 and limiter.waiting == 0

    run(scenario())


def test_release_hands_the_slot_to_the_first_waiter():
    async def scenario():
        limiter = ConcurrencyLimiter(1)
        await limiter.acquire(0)
        order = []

        async def wait(name):
            if await limiter.acquire(2):
                order.append(name)

        tasks = [asyncio.create_task(wait(n)) for n in ("a", "b")]
        await asyncio.sleep(0.05)
        assert limiter.waiting == 2
        limiter.release()
        await asyncio.sleep(0.05)
        assert order == ["a"] and limiter.active == 1
        limiter.release()
        await asyncio.gather(*tasks)
        assert order == ["a", "b"]
        limiter.release()
        assert limiter.active == 0

    run(scenario())


def test_a_cancelled_waiter_takes_no_slot():
    async def scenario():
        limiter = ConcurrencyLimiter(1)
        await limiter.acquire(0)
        task = asyncio.create_task(limiter.acquire(5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert limiter.waiting == 0
        limiter.release()
        assert limiter.active == 0

    run(scenario())


def test_retry_after_is_whole_seconds_at_least_one():
    limiter = ConcurrencyLimiter(1)
    assert limiter.retry_after_seconds(0.0) == 1
    assert limiter.retry_after_seconds(1.0) == 1
    assert limiter.retry_after_seconds(2.5) == 3


@pytest.mark.slow
@pytest.mark.parametrize(("bound", "concurrent"), [(2, 5), (4, 7)])
def test_exactly_the_excess_is_rejected_with_429_in_time(start, double, bound, concurrent):
    wait = 0.5
    server, app = start(max_concurrency=bound, queue_timeout_seconds=wait)
    double.set(tokens=15, token_delay=0.1)  # each admitted stream lasts about 1.5 s

    async def one(http: httpx.AsyncClient, path: str) -> tuple[int, float, str | None, str]:
        started = time.monotonic()
        async with http.stream("POST", path, json=GENERATE if path == "/api/generate" else
                               {"prompt": "p", "stream": True}) as response:
            status_after = time.monotonic() - started
            body = (await response.aread()).decode()
        return response.status_code, status_after, response.headers.get("retry-after"), body

    async def scenario():
        limits = httpx.Limits(max_connections=concurrent + 2)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10,
                                     limits=limits) as http:
            # Open the connections first, so the timings below exclude TCP setup.
            await asyncio.gather(*(http.get("/healthz") for _ in range(concurrent)))
            paths = ["/api/generate" if i % 2 else "/v1/completions" for i in range(concurrent)]
            return await asyncio.gather(*(one(http, p) for p in paths))

    results = asyncio.run(scenario())
    ok = [r for r in results if r[0] == 200]
    rejected = [r for r in results if r[0] == 429]
    assert len(ok) == bound and len(rejected) == concurrent - bound
    for _, after, retry_after, body in rejected:
        assert retry_after == "1"
        assert wait - 0.05 <= after <= wait + 0.1, after
        assert "too many requests" in body
    for _, _, _, body in ok:
        assert body.count("tok") == 15
    slowest = max(r[1] for r in rejected)
    figure(f"{concurrent} concurrent, bound {bound}, wait {wait} s -> 429",
           f"{len(rejected)} rejected, slowest 429 after {slowest * 1000:.1f} ms "
           f"(limit {(wait + 0.1) * 1000:.0f} ms)")
    assert app.state.gateway.limiter.active == 0


@pytest.mark.slow
def test_a_request_waiting_for_a_slot_is_served_when_one_frees(start, double):
    server, app = start(max_concurrency=1, queue_timeout_seconds=3.0)
    double.set(tokens=5, token_delay=0.1)

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10) as http:
            first = asyncio.create_task(http.post("/api/generate", json=GENERATE))
            await asyncio.sleep(0.1)
            second = await http.post("/api/generate", json=GENERATE)
            return (await first).status_code, second.status_code

    assert asyncio.run(scenario()) == (200, 200)


@pytest.mark.slow
def test_listings_and_health_are_not_bounded(start, double):
    server, app = start(max_concurrency=1, queue_timeout_seconds=0.2)
    double.set(tokens=20, token_delay=0.05)

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10) as http:
            stream = asyncio.create_task(http.post("/api/generate", json=GENERATE))
            await asyncio.sleep(0.2)
            in_flight = app.state.gateway.in_flight()
            others = [await http.get(p) for p in ("/api/tags", "/v1/models", "/healthz",
                                                  "/readyz", "/api/version")]
            busy = await http.post("/api/generate", json=GENERATE)
            await stream
            return in_flight, [r.status_code for r in others], busy.status_code

    in_flight, statuses, busy = asyncio.run(scenario())
    assert in_flight == 1
    assert statuses == [200, 200, 200, 200, 200]
    assert busy == 429
