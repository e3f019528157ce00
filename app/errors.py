"""Error responses in the shape each route's clients expect.

Ollama-native routes (/api/*, and anything that is not /v1/*) answer ``{"error": "<message>",
"request_id": "..."}`` (Ollama's own shape, plus the request id). OpenAI-compatible routes
(/v1/*) answer ``{"error": {"message", "type", "param", "code", "request_id"}}`` (OpenAI's shape,
as Ollama's compatibility layer also uses). No body ever carries a traceback or a file path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

OPENAI = "openai"
OLLAMA = "ollama"

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.@+-]+){2,}[/\\]?")
_MAX_MESSAGE = 300


def api_style(path: str) -> str:
    return OPENAI if path.startswith("/v1/") else OLLAMA


def scrub(message: str) -> str:
    """A message from elsewhere (Ollama), without file paths, on one line, bounded."""
    text = _PATH.sub("<path>", " ".join(str(message).split()))
    return text[:_MAX_MESSAGE]


class GatewayError(Exception):
    """An expected failure with a status, a client-facing message and a short log reason."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = list(headers)
        self.reason = reason or code or f"http_{status}"


def error_payload(
    style: str, status: int, message: str, request_id: str | None, code: str | None = None
) -> dict[str, Any]:
    if style == OPENAI:
        kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {
            "error": {
                "message": message,
                "type": kind,
                "param": None,
                "code": code,
                "request_id": request_id,
            }
        }
    return {"error": message, "request_id": request_id}


def error_body(
    style: str, status: int, message: str, request_id: str | None, code: str | None = None
) -> bytes:
    payload = error_payload(style, status, message, request_id, code)
    return json.dumps(payload, separators=(",", ":")).encode()


Send = Callable[[dict[str, Any]], Awaitable[None]]


async def send_error(
    send: Send,
    style: str,
    error: GatewayError,
    request_id: str | None,
    *,
    close: bool = False,
) -> None:
    """Send a complete JSON error response on a raw ASGI send channel."""
    body = error_body(style, error.status, error.message, request_id, error.code)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
