"""The gateway's process-wide state: settings, policy, limiter, upstream client, drain, metrics.

One Gateway per app (app.state.gateway). start()/stop() run in the app's lifespan: the upstream
session and the metrics task live on the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from app import logs
from app.drain import Drain
from app.errors import GatewayError
from app.limits import ConcurrencyLimiter
from app.metrics import Metrics
from app.policy import Policy
from app.upstream import Upstream

if TYPE_CHECKING:
    from app.settings import Settings


def _normalize(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


class Readiness:
    """Ready = Ollama answers and the default model is loaded (listed by GET /api/ps).

    The answer is cached for GATEWAY_READY_CACHE_SECONDS, and concurrent checks share one probe.
    """

    def __init__(self, upstream: Upstream, settings: Settings) -> None:
        self.upstream = upstream
        self.model = _normalize(settings.default_model)
        self.ttl = settings.ready_cache_seconds
        self._cached: tuple[float, bool, str] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> tuple[bool, str]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return self._cached[1], self._cached[2]
            ready, reason = await self._probe()
            self._cached = (time.monotonic(), ready, reason)
            return ready, reason

    async def _probe(self) -> tuple[bool, str]:
        try:
            data = await self.upstream.get_json("/api/ps")
        except GatewayError as error:
            return False, error.code or "upstream_error"
        models = data.get("models") if isinstance(data, dict) else None
        for entry in models if isinstance(models, list) else []:
            if not isinstance(entry, dict):
                continue
            names = {entry.get("name"), entry.get("model")}
            if any(isinstance(n, str) and _normalize(n) == self.model for n in names):
                return True, "model_loaded"
        return False, "model_not_loaded"


class Gateway:
    def __init__(self, settings: Settings) -> None:
        # Each part takes what it needs from the settings itself: a new setting is read where
        # it is used, not threaded through here.
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.limiter = ConcurrencyLimiter.from_settings(settings)
        self.upstream = Upstream.from_settings(settings)
        self.drain = Drain.from_settings(settings)
        self.readiness = Readiness(self.upstream, settings)
        self.metrics = Metrics.from_settings(settings)
        self._gauge: asyncio.Task[None] | None = None

    def in_flight(self) -> int:
        return self.limiter.active

    async def start(self) -> None:
        await self.upstream.start()
        self.drain.install_signal_hooks()
        self._gauge = asyncio.create_task(
            self.metrics.run_gauge(self.settings.metric_interval_seconds, self.in_flight),
            name="in-flight-gauge",
        )
        logs.event(
            "gateway started",
            models=list(self.settings.models),
            max_concurrency=self.settings.max_concurrency,
            auth="disabled" if self.settings.auth_disabled else f"{len(self.settings.keys)} keys",
        )
        if self.settings.auth_disabled:
            logs.event("authentication is DISABLED (GATEWAY_AUTH_DISABLED=true): local use only",
                       logging.WARNING)

    async def stop(self) -> None:
        self.drain.remove_signal_hooks()
        self.drain.close()
        if self._gauge is not None:
            self._gauge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gauge
            self._gauge = None
        self.metrics.in_flight(self.in_flight())
        await self.upstream.close()
        logs.event("gateway stopped")
