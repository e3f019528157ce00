"""create_app(): the FastAPI gateway, assembled from Settings (app.settings) and the routers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException

from app import logs
from app import openapi as openapi_doc
from app.context import info_of
from app.cors import GatewayCORS
from app.errors import GatewayError, error_payload
from app.middleware import (
    ABORTER_KEY,
    AuthMiddleware,
    BodyLimitMiddleware,
    RequestContextMiddleware,
    connection_aborter,
)
from app.routers import health, ollama, openai
from app.runtime import Gateway
from app.settings import ConfigurationError, load_settings

__all__ = ["ConfigurationError", "create_app"]

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json"})


class RouteTable:
    """The app's routes as the middleware sees them (read live, so no route escapes auth).

    Matching is by path: fixed paths exactly, routes with a path parameter by their regex
    (Starlette's own). Reading them walks FastAPI's route tree (about 10 us), so what was found
    is kept: a path among them is answered at once, any other path is looked up afresh (so a
    route added after start is protected from its first request; only a 404 pays for the walk).
    `name(path)` is what the access log calls the route: the template, never the raw path.
    """

    def __init__(self, app: FastAPI, public: frozenset[str]) -> None:
        self.app = app
        self.public = public
        self._seen: frozenset[str] = frozenset()
        self._patterns: tuple[tuple[re.Pattern[str], str], ...] = ()

    def _refresh(self) -> None:
        fixed, patterns = set(), []
        for context in iter_route_contexts(self.app.routes):
            path = context.path
            if not path:
                continue
            regex = getattr(context.route, "path_regex", None)
            path_format = context.path_format
            if "{" in path and regex is not None and path_format is not None:
                patterns.append((regex, path_format))
            else:
                fixed.add(path)
        self._seen, self._patterns = frozenset(fixed), tuple(patterns)

    def name(self, path: str) -> str | None:
        if path in self._seen:
            return path
        for _ in range(2):  # the kept tables, then fresh ones
            for regex, template in self._patterns:
                if regex.match(path):
                    return template
            if path in self._seen:
                return path
            self._refresh()
        return None

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.name(path) is not None

    def is_protected(self, path: str) -> bool:
        return path not in self.public and path in self


class GatewayApp(FastAPI):
    """FastAPI, plus a way to drop a client connection (app.middleware.connection_aborter).

    Starlette's outermost layer (ServerErrorMiddleware) wraps the server's `send`, so the
    server's own channel is only seen here, before it is wrapped.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[ABORTER_KEY] = connection_aborter(send)
        await super().__call__(scope, receive, send)


def _check_auth(settings: Any) -> None:
    if settings.auth_disabled:
        return
    if not settings.keys:
        raise ConfigurationError(
            "GATEWAY_API_KEYS is empty; set the active keys (comma-separated), or "
            "GATEWAY_AUTH_DISABLED=true for a local run without authentication"
        )


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    info = info_of(request.scope)
    info.reason = info.reason or exc.reason
    payload = error_payload(info.style, exc.status, exc.message, info.request_id, exc.code)
    return JSONResponse(payload, status_code=exc.status, headers=dict(exc.headers))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    info = info_of(request.scope)
    messages = {404: "not found", 405: "method not allowed"}
    message = messages.get(exc.status_code, "request refused")
    info.reason = info.reason or ("not_found" if exc.status_code == 404 else "http_error")
    payload = error_payload(info.style, exc.status_code, message, info.request_id)
    return JSONResponse(payload, status_code=exc.status_code, headers=exc.headers)


def create_app(settings: Any | None = None) -> FastAPI:
    """Build the gateway. Raises ConfigurationError (one-line message) if it must not start."""
    settings = settings if settings is not None else load_settings()
    _check_auth(settings)
    logs.configure_logging(settings.log_level)
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    docs = settings.docs_enabled
    app = GatewayApp(
        title="LLM gateway",
        version="1",
        description="Authenticated, bounded, streaming front for Ollama (Ollama-native and "
                    "OpenAI-compatible routes). Every route but /healthz and /readyz needs "
                    "`Authorization: Bearer <key>`.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        redirect_slashes=False,
    )
    app.state.gateway = gateway
    for router in (health.router, ollama.router, openai.router):
        app.include_router(router)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(HTTPException, _http_error)

    public = frozenset(health.PUBLIC_PATHS | (DOCS_PATHS if docs else frozenset()))
    routes = RouteTable(app, public)
    openapi_doc.install(app, public)

    # add_middleware prepends: the last added is the outermost.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, routes=routes,
                       timeout_seconds=settings.request_body_timeout_seconds)
    app.add_middleware(AuthMiddleware, keys=settings.keys, routes=routes,
                       disabled=settings.auth_disabled)
    if settings.cors_origins:
        app.add_middleware(GatewayCORS, origins=list(settings.cors_origins))
    app.add_middleware(RequestContextMiddleware, routes=routes, metrics=gateway.metrics)
    return app
