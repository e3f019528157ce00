"""CORS for browsers, when GATEWAY_CORS_ORIGINS names the origins allowed to call the gateway.

Starlette's CORSMiddleware allows a fixed list of request headers, while the official JS SDKs
send a family of them: openai-node (and every Stainless-generated SDK) adds `x-stainless-*`
headers (os, arch, runtime, package version, retry count, timeout, ...), and which ones changes
between SDK releases. So a preflight may also ask for any header with the prefix
`x-stainless-`; every header it asks for is then mirrored back as allowed. Credentials (cookies)
are never allowed: the gateway authenticates with a bearer key, which a browser page holding it
sends itself (a choice its owner makes; docs/clients.md, "Browsers").
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

ALLOWED_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-ID",
                   "OpenAI-Organization", "OpenAI-Project", "OpenAI-Beta", "User-Agent")
ALLOWED_PREFIXES = ("x-stainless-",)
ALLOWED_METHODS = ("GET", "HEAD", "POST")
EXPOSED_HEADERS = ("X-Request-ID", "Retry-After")
_REQUESTED = "access-control-request-headers"


class GatewayCORS(CORSMiddleware):
    def __init__(self, app: Any, *, origins: list[str]) -> None:
        super().__init__(app, allow_origins=origins, allow_methods=ALLOWED_METHODS,
                         allow_headers=ALLOWED_HEADERS, expose_headers=EXPOSED_HEADERS)

    def preflight_response(self, request_headers: Headers) -> Response:
        requested = request_headers.get(_REQUESTED)
        if requested is None:
            return super().preflight_response(request_headers=request_headers)
        names = [name.strip() for name in requested.split(",") if name.strip()]
        fixed = [name for name in names if not name.lower().startswith(ALLOWED_PREFIXES)]
        raw = [(k, v) for k, v in request_headers.raw if k.lower() != _REQUESTED.encode()]
        if fixed:
            raw.append((_REQUESTED.encode(), ", ".join(fixed).encode("latin-1")))
        response = super().preflight_response(request_headers=Headers(raw=raw))
        if response.status_code == 200:
            # Everything asked for is allowed: say so by name (the fixed list alone would not
            # name the prefixed headers, and the browser would refuse them).
            response.headers["Access-Control-Allow-Headers"] = ", ".join(names)
        return response
