"""CloudWatch Embedded Metric Format (EMF) lines on stdout.

Names come from app.contract: namespace METRIC_NAMESPACE, one dimension set METRIC_DIMENSIONS
(ClusterName, ServiceName, from GATEWAY_CLUSTER_NAME / GATEWAY_SERVICE_NAME). The
InFlightRequests gauge (requests holding a concurrency slot) is written by a background task at
least every GATEWAY_METRIC_INTERVAL_SECONDS (contract default 30 s), 0 when idle, so target
tracking always has a data point per task. Each proxied request adds one line with
RequestLatency, and TimeToFirstToken / OutputTokens when they are known.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from app import contract

if TYPE_CHECKING:
    from app.settings import Settings


class Metrics:
    def __init__(
        self, cluster_name: str, service_name: str, stream: Callable[[], TextIO] | None = None
    ) -> None:
        self.dimensions = dict(zip(contract.METRIC_DIMENSIONS, (cluster_name, service_name),
                                   strict=True))
        self._stream = stream or (lambda: sys.stdout)

    @classmethod
    def from_settings(cls, settings: Settings) -> Metrics:
        return cls(settings.cluster_name, settings.service_name)

    def document(self, values: dict[contract.Metric, float]) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": contract.METRIC_NAMESPACE,
                        "Dimensions": [list(contract.METRIC_DIMENSIONS)],
                        "Metrics": [{"Name": m.name, "Unit": m.unit} for m in values],
                    }
                ],
            }
        }
        doc.update(self.dimensions)
        doc.update({metric.name: value for metric, value in values.items()})
        return doc

    def emit(self, values: dict[contract.Metric, float]) -> None:
        if not values:
            return
        line = json.dumps(self.document(values), separators=(",", ":"))
        try:
            stream = self._stream()
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):  # stdout gone: metrics are best effort
            pass

    def in_flight(self, count: int) -> None:
        self.emit({contract.IN_FLIGHT_REQUESTS: count})

    def request(
        self, latency_ms: float, ttft_ms: float | None, output_tokens: int | None
    ) -> None:
        values: dict[contract.Metric, float] = {contract.REQUEST_LATENCY: round(latency_ms, 3)}
        if ttft_ms is not None:
            values[contract.TIME_TO_FIRST_TOKEN] = round(ttft_ms, 3)
        if output_tokens is not None:
            values[contract.OUTPUT_TOKENS] = output_tokens
        self.emit(values)

    async def run_gauge(self, interval: float, current: Callable[[], int]) -> None:
        """Write the in-flight gauge now and every `interval` seconds until cancelled.

        On a fixed cadence (not sleep-after-write), so the period does not drift past the
        interval the scaling policy relies on.
        """
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:  # ended by cancellation in the app's lifespan shutdown
            self.in_flight(current())
            next_at += interval
            now = loop.time()
            if next_at <= now:  # fell behind (a stalled loop): carry on from now
                next_at = now + interval
            await asyncio.sleep(next_at - now)
