"""Draining on SIGTERM: stop taking work, let streams finish, cut the rest with an error event.

uvicorn owns SIGTERM: it stops listening, lets open requests run for --timeout-graceful-shutdown
seconds, then cancels them and exits. Left alone, a stream still open at that moment is cut
silently. So, while the app runs under uvicorn, the gateway chains its own handler in front of
uvicorn's (installed in lifespan startup, removed in lifespan shutdown) and on the signal:

- marks itself draining: /readyz answers 503, new proxied requests 503 + Connection: close
  (uvicorn has closed the listening socket, so these can only come on an open connection);
- just before the grace period ends (GATEWAY_GRACEFUL_SHUTDOWN_SECONDS, the same number as
  uvicorn's flag, minus a margin of min(1 s, 20 %)), ends every stream still open with a
  terminal error line/event and a clean end of the chunked body, and closes its upstream request.

After that uvicorn re-raises the captured SIGTERM with the default handler restored, so the
process ends by the signal: exit status 143 (-15 from Popen), not 0.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from app import logs

if TYPE_CHECKING:
    from app.settings import Settings

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Drain:
    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.draining = False
        self.deadline_passed = False
        self.began_at: float | None = None
        self._watchers: set[asyncio.Future[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._installed: dict[int, Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Drain:
        return cls(settings.graceful_shutdown_seconds)

    @property
    def margin_seconds(self) -> float:
        return min(1.0, 0.2 * self.grace_seconds)

    @property
    def open_streams(self) -> int:
        return sum(1 for w in self._watchers if not w.done())

    def watch(self) -> asyncio.Future[None]:
        """A future that resolves when open requests must be cut (the drain deadline)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.deadline_passed:
            future.set_result(None)
        self._watchers.add(future)
        return future

    def unwatch(self, future: asyncio.Future[None]) -> None:
        self._watchers.discard(future)
        if not future.done():
            future.cancel()

    def begin(self) -> None:
        """Start draining (idempotent); the deadline fires grace - margin seconds from now."""
        if self.draining:
            return
        self.draining = True
        self.began_at = time.monotonic()
        delay = max(0.0, self.grace_seconds - self.margin_seconds)
        self._timer = asyncio.get_running_loop().call_later(delay, self.cut)
        logs.event("draining", grace_seconds=self.grace_seconds, cut_after_seconds=delay,
                   open_requests=self.open_streams)

    def cut(self) -> None:
        self.deadline_passed = True
        cut = 0
        for future in list(self._watchers):
            if not future.done():
                future.set_result(None)
                cut += 1
        if cut:
            logs.event("grace period over: open requests cut", cut=cut)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- signal chaining -------------------------------------------------------------------

    def install_signal_hooks(self) -> None:
        """Chain in front of the server's SIGTERM/SIGINT handlers (main thread, uvicorn)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # nobody handles it (default action): leave it alone

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.begin)
                previous(signum, frame)

            signal.signal(sig, handler)
            self._installed[sig] = (handler, previous)

    def remove_signal_hooks(self) -> None:
        for sig, (handler, previous) in list(self._installed.items()):
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)
        self._installed.clear()
