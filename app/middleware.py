"""Pure ASGI middleware (no BaseHTTPMiddleware: it hides client disconnects from streams).

Order, outermost first (see app.factory.create_app):
  RequestContextMiddleware  request id, security headers, one JSON log line, request metrics,
                            last-resort 500 in the route's error shape
  CORSMiddleware            only when GATEWAY_CORS_ORIGINS is set
  AuthMiddleware            Bearer key on every route except the public ones (health, docs)
  BodyLimitMiddleware       413 before parsing, counting bytes as they arrive
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
import struct
import traceback
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from app import logs
from app.context import SCOPE_KEY, RequestInfo, info_of, request_id_from
from app.errors import GatewayError, api_style, send_error
from app.metrics import Metrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ABORTER_KEY = "gateway.aborter"  # set by app.factory.GatewayApp from the server's own send
_OWN_HEADERS = {b"server", b"x-request-id", b"x-content-type-options", b"cache-control"}


def _header(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope.get("headers", []) if key.lower() == name]


def connection_aborter(send: Send) -> Callable[[], None] | None:
    """A way to drop the client connection, when the server offers one.

    ASGI has no message for it, and closing the transport (what uvicorn does when an app fails)
    waits until the buffered bytes are written, which never happens for a client that does not
    read. uvicorn's `send` is the bound method RequestResponseCycle.send, whose `transport` is
    the connection (uvicorn 0.54.0, uvicorn/protocols/http/httptools_impl.py and h11_impl.py:
    `self.transport = transport` in RequestResponseCycle.__init__); transport.abort() closes it
    at once, discarding the buffer (asyncio.WriteTransport.abort; uvloop's UVStream.abort).
    The cycle's `disconnected` flag is what uvicorn's connection_lost sets when the loss is
    delivered (a loop iteration or more later); setting it now makes uvicorn's send a no-op at
    once and keeps it from reporting a response the app "did not complete".
    tests/app/test_write_bound.py fails if this stops reaching the connection.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if (cycle is None or transport is None or not callable(getattr(transport, "abort", None))
            or not hasattr(cycle, "disconnected")):
        return None

    def abort() -> None:
        # SO_LINGER on with 0 s: the close is a reset, and the kernel frees the socket's send
        # buffer too (socket(7), SO_LINGER); without it, a closed socket whose peer does not
        # read lives on, orphaned, with its buffer, until TCP gives up on it.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        cycle.disconnected = True

    return abort


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame, for the operator's log (never for a response)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename}:{last.lineno}"


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, *, routes: Any, metrics: Metrics | None = None
    ) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ids = _header(scope, b"x-request-id")
        request_id = request_id_from(ids[0] if len(ids) == 1 else None)
        path = scope["path"]
        info = RequestInfo(
            request_id=request_id,
            method=scope["method"],
            route=self.routes.name(path) or "unmatched",
            style=api_style(path),
        )
        info.aborter = scope.get(ABORTER_KEY)
        scope[SCOPE_KEY] = info
        own = [
            (b"x-request-id", request_id.encode("ascii")),
            (b"x-content-type-options", b"nosniff"),
            (b"cache-control", b"no-store"),
        ]

        logged = False

        def log_once() -> None:
            nonlocal logged
            if not logged:
                logged = True
                logs.access(info.log_fields())
                if info.proxied and self.metrics is not None:
                    self.metrics.request(info.duration_ms(), info.ttft_ms, info.output_tokens)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                info.status = message["status"]
                info.response_started = True
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in _OWN_HEADERS
                ]
                message = {**message, "headers": headers + own}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                info.response_complete = True
                # Logged before the last bytes leave, so the line exists once the client has
                # the whole response (and a log reader can rely on that ordering).
                log_once()
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            info.reason = info.reason or "internal_error"
            logs.event("unhandled error", logging.ERROR, request_id=request_id,
                       error=type(exc).__name__, where=_where(exc))
            if not info.response_started:
                error = GatewayError(500, "internal error", code="internal_error")
                await send_error(send_with_headers, info.style, error, request_id)
        finally:
            log_once()


def key_id(key: str) -> str:
    """How a key appears in logs: a short sha256 prefix, never the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class AuthMiddleware:
    """`Authorization: Bearer <key>` on every protected path; 401 without detail otherwise.

    Protected = every route of the app except the public ones; a path that matches no route is
    left to the router (404 for any method, with or without a key). The presented key is hashed
    and the digest compared with hmac.compare_digest against every active key's digest, with no
    early exit, so timing reveals neither which key matched nor how long the keys are. Keys in
    the query string are never looked at.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Collection[str],
        routes: Any,
        disabled: bool = False,
    ) -> None:
        self.app = app
        self.routes = routes  # app.factory.RouteTable: is_protected(path)
        self.disabled = disabled
        self.keys = [(hashlib.sha256(k.encode()).digest(), key_id(k)) for k in keys]

    def _match(self, header_values: list[bytes]) -> str | None:
        token = b""
        if len(header_values) == 1:
            scheme, _, rest = header_values[0].strip().partition(b" ")
            if scheme.lower() == b"bearer":
                token = rest.strip()
        # Hash even an empty token so every path through here costs the same.
        presented = hashlib.sha256(token).digest()
        matched = None
        for digest, ident in self.keys:
            if hmac.compare_digest(presented, digest):
                matched = ident
        return matched if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.routes.is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        info = info_of(scope)
        if self.disabled:
            await self.app(scope, receive, send)
            return
        matched = self._match(_header(scope, b"authorization"))
        if matched is None:
            info.reason = "unauthorized"
            error = GatewayError(401, "unauthorized", code="invalid_api_key",
                                 headers=[("WWW-Authenticate", "Bearer")])
            await send_error(send, info.style, error, info.request_id)
            return
        info.key_id = matched
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Reads the body of an authenticated request on a known route, bounded in size and time.

    Runs inside AuthMiddleware, so no body is read before the key is checked; public and
    unknown paths never have theirs read at all (their answers do not depend on it, and a
    body nobody reads costs nothing: the server discards it). 413 for a body over the limit
    (at once from Content-Length, else while counting chunks); 408 when the body does not
    arrive within GATEWAY_REQUEST_BODY_TIMEOUT_SECONDS. The body is replayed to the app; after
    the replay, receive() is the server's again, so http.disconnect still reaches the app.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, routes: Any,
                 timeout_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.routes = routes  # app.factory.RouteTable: is_protected(path)
        self.timeout_seconds = timeout_seconds

    async def _refuse(self, send: Send, info: RequestInfo, error: GatewayError) -> None:
        info.reason = error.reason
        await send_error(send, info.style, error, info.request_id, close=True)

    def _too_large(self) -> GatewayError:
        return GatewayError(413, f"request body larger than {self.max_bytes} bytes",
                            code="request_too_large", reason="body_too_large")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.routes.is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        info = info_of(scope)
        lengths = _header(scope, b"content-length")
        if lengths:
            try:
                declared = int(lengths[0])
            except ValueError:
                declared = self.max_bytes + 1
            if declared > self.max_bytes:
                await self._refuse(send, info, self._too_large())
                return
        try:
            async with asyncio.timeout(self.timeout_seconds):
                body = await self._read(receive, info)
        except TimeoutError:
            await self._refuse(send, info, GatewayError(
                408, f"request body not received within {self.timeout_seconds:g} s",
                code="request_timeout", reason="body_timeout"))
            return
        if body is None:
            return
        if isinstance(body, GatewayError):
            await self._refuse(send, info, body)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, info: RequestInfo) -> bytes | GatewayError | None:
        """The whole body; a GatewayError when too large; None when the client left."""
        chunks: list[bytes] = []
        total = 0
        # Bounded: every message but the last carries at least one byte, and bytes are capped.
        for _ in range(self.max_bytes + 2):
            message = await receive()
            if message["type"] == "http.disconnect":
                info.disconnected = True
                info.reason = "client_disconnected"
                return None
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                return self._too_large()
            chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks)
        return self._too_large()
