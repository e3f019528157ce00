"""The concurrency bound: at most GATEWAY_MAX_CONCURRENCY generations at once per task.

A request that finds every slot taken waits at most GATEWAY_QUEUE_TIMEOUT_SECONDS, first come
first served, then gets 429 with Retry-After (never 503: a 503 counts as a target 5xx at the ALB
and pages someone).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings


class ConcurrencyLimiter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def from_settings(cls, settings: Settings) -> ConcurrencyLimiter:
        return cls(settings.max_concurrency)

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def retry_after_seconds(self, queue_timeout: float) -> int:
        """What Retry-After says: at least 1 s (the header counts whole seconds)."""
        return max(1, math.ceil(queue_timeout))

    async def acquire(self, timeout: float) -> bool:
        """Take a slot, waiting up to `timeout` seconds; False if none came free."""
        if self.active < self.limit and not self.waiting:
            self.active += 1
            return True
        if timeout <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
            return True  # release() handed its slot over: `active` already counts it
        except TimeoutError:
            # release() may have handed a slot over just as the wait ran out: keep it.
            return waiter.done() and not waiter.cancelled()
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # a slot arrived as we were cancelled: pass it on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; active is unchanged
                return
        self.active -= 1
