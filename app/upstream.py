"""The one module that talks to Ollama: one shared aiohttp ClientSession with a connection pool.

(aiohttp, not httpx: the benchmark issue measured httpx.AsyncClient collapsing at 64 concurrent
streams while aiohttp kept 0.89 of direct throughput.)

Timeouts (app.contract.TIMEOUTS, overridable through Settings for tests):
  connect  TCP connect to Ollama (upstream_connect_seconds)            -> 503 unreachable
  read     streams: the longest silence, i.e. the first byte (which includes loading a cold
           model) and every gap between two chunks after it (first_token_seconds) -> 504.
           A non-streaming answer is silent until it is complete, so there only `total`
           bounds the silence.
  total    the whole exchange, body included (max_generation_seconds)  -> 504
Failures are raised as GatewayError with the status the route answers: unreachable 503,
timeout 504, Ollama 5xx or a broken connection 502.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import aiohttp

from app.errors import GatewayError, scrub

if TYPE_CHECKING:
    from app.settings import Settings

# identity: bytes are relayed as they come, so they must not be compressed on the way.
_HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
MAX_ERROR_BODY = 64 * 1024


def _mapped(exc: BaseException, timeouts: aiohttp.ClientTimeout) -> GatewayError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return GatewayError(503, "Ollama did not accept a connection in time",
                            code="upstream_unavailable")
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return GatewayError(504, f"Ollama sent nothing for {timeouts.sock_read:g} s",
                            code="upstream_timeout")
    if isinstance(exc, TimeoutError):
        return GatewayError(504, f"Ollama did not finish within {timeouts.total or 0:g} s",
                            code="upstream_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return GatewayError(503, "Ollama is unreachable", code="upstream_unavailable")
    return GatewayError(502, "Ollama closed the connection unexpectedly",
                        code="upstream_error", reason="upstream_broken")


def upstream_status_error(status: int, raw: bytes) -> GatewayError:
    """Ollama answered with an error: 5xx becomes 502, 4xx passes through with its message."""
    message = ""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            message = scrub(error)
    if status >= 500:
        text = f"Ollama failed: {message}" if message else f"Ollama failed with status {status}"
        return GatewayError(502, text, code="upstream_error", reason=f"upstream_{status}")
    return GatewayError(status, message or f"Ollama refused the request ({status})",
                        code="upstream_refused", reason=f"upstream_{status}")


class UpstreamResponse:
    """One response from Ollama, read chunk by chunk; close() drops the connection."""

    def __init__(self, response: aiohttp.ClientResponse, timeouts: aiohttp.ClientTimeout):
        self._response = response
        self._timeouts = timeouts
        self.status = response.status
        # The media type alone, lower case (aiohttp: application/octet-stream when absent).
        self.content_type = response.content_type

    async def read_chunk(self) -> bytes:
        """Whatever bytes have arrived (waiting for some); b"" at the end of the body."""
        try:
            return await self._response.content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc, self._timeouts) from None

    async def read_all(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:  # bounded: `limit` bytes, and the total timeout
            chunk = await self.read_chunk()
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise GatewayError(502, "Ollama's answer is larger than the gateway accepts",
                                   code="upstream_error", reason="upstream_too_large")
            chunks.append(chunk)

    def release(self) -> None:
        """The body was read to the end: the connection goes back to the pool."""
        self._response.release()

    def close(self) -> None:
        """Drop the connection: Ollama sees the client leave and stops generating."""
        self._response.close()


class Upstream:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        pool_size: int,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeouts = aiohttp.ClientTimeout(
            total=total_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        # Non-streaming generations: Ollama sends nothing until it has finished.
        self.whole_timeouts = aiohttp.ClientTimeout(
            total=total_timeout, sock_connect=connect_timeout, sock_read=None
        )
        # Listings and readiness probes: quick questions, short answers.
        self.quick_timeouts = aiohttp.ClientTimeout(
            total=min(total_timeout, read_timeout, 10.0), sock_connect=connect_timeout,
            sock_read=min(read_timeout, 10.0),
        )
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Upstream:
        return cls(
            settings.ollama_base_url,
            connect_timeout=settings.upstream_connect_timeout_seconds,
            read_timeout=settings.upstream_read_timeout_seconds,
            total_timeout=settings.upstream_total_timeout_seconds,
            # every slot, plus listings and readiness probes
            pool_size=settings.max_concurrency + 8,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # Normally created once, in the app's lifespan; lazily only when a server runs the
            # app without lifespan (some test clients).
            connector = aiohttp.TCPConnector(
                limit=self.pool_size, limit_per_host=self.pool_size, keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeouts, auto_decompress=False,
                # Ollama sets no cookies, and a proxy must not replay one client's to the next.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",), headers={"User-Agent": "llm-gateway"},
            )
            self._loop = loop
        return self._session

    async def start(self) -> None:
        _ = self.session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def open(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        stream: bool = True,
        quick: bool = False,
    ) -> UpstreamResponse:
        """Send a request; return once Ollama's status line and headers have arrived.

        stream=False: the answer comes whole at the end (only the total timeout applies);
        quick=True: listings and probes (short timeouts).
        """
        timeouts = self.timeouts if stream else self.whole_timeouts
        timeouts = self.quick_timeouts if quick else timeouts
        data = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        try:
            response = await self.session.request(
                method, self.base_url + path, data=data, headers=_HEADERS, timeout=timeouts,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc, timeouts) from None
        return UpstreamResponse(response, timeouts)

    async def get_json(self, path: str) -> Any:
        """GET a small JSON document (listings, /api/ps); errors as GatewayError."""
        response = await self.open("GET", path, quick=True)
        try:
            raw = await response.read_all(MAX_ERROR_BODY * 16)
            if response.status >= 400:
                raise upstream_status_error(response.status, raw)
            response.release()
        finally:
            response.close()
        try:
            return json.loads(raw)
        except ValueError:
            raise GatewayError(502, "Ollama answered with something that is not JSON",
                               code="upstream_error", reason="upstream_bad_json") from None
