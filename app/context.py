"""Per-request facts, gathered by the layers a request passes through and logged once at the end.

The outermost middleware puts a RequestInfo into the ASGI scope; auth fills in the key id, the
routers the model, the proxy the timings and token counts. Only the fields returned by
log_fields() are ever written out.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Callable, MutableMapping
from typing import Any

from app.errors import api_style

SCOPE_KEY = "gateway.info"
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_MODEL_LOG_CHARS = 100


def request_id_from(header: bytes | None) -> str:
    """The caller's X-Request-ID if it is 1-128 safe characters, else a fresh one."""
    if header:
        try:
            text = header.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _REQUEST_ID.fullmatch(text):
            return text
    return uuid.uuid4().hex


@dataclasses.dataclass
class RequestInfo:
    request_id: str
    method: str
    route: str
    style: str
    started: float = dataclasses.field(default_factory=time.perf_counter)
    status: int | None = None
    response_started: bool = False
    response_complete: bool = False
    proxied: bool = False  # went (or tried to go) to Ollama for a generation or embedding
    key_id: str | None = None
    model: str | None = None
    stream: bool | None = None
    first_byte: float | None = None  # perf_counter of the first upstream body byte
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    upstream_status: int | None = None
    disconnected: bool = False
    reason: str | None = None  # short machine-readable cause of a non-2xx / cut stream
    # Drops the client connection (set by the outermost middleware when the server offers it).
    aborter: Callable[[], None] | None = dataclasses.field(default=None, repr=False)

    def abort_connection(self) -> None:
        """Drop the client connection at once (a reset; whatever is buffered for it is freed)."""
        if self.aborter is not None:
            self.aborter()
            self.aborter = None

    @property
    def ttft_ms(self) -> float | None:
        if self.first_byte is None:
            return None
        return (self.first_byte - self.started) * 1000

    def duration_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def log_fields(self) -> dict[str, Any]:
        ttft = self.ttft_ms
        model = self.model[:_MODEL_LOG_CHARS] if isinstance(self.model, str) else None
        return {
            "request_id": self.request_id,
            "method": self.method,
            "route": self.route,
            "status": self.status,
            "duration_ms": round(self.duration_ms(), 3),
            "ttft_ms": round(ttft, 3) if ttft is not None else None,
            "model": model,
            "stream": self.stream,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "upstream_status": self.upstream_status,
            "disconnected": self.disconnected,
            "complete": self.response_complete,
            "key_id": self.key_id,
            "reason": self.reason,
        }


def info_of(scope: MutableMapping[str, Any]) -> RequestInfo:
    info = scope.get(SCOPE_KEY)
    if info is None:  # the app was called without the context middleware (unit tests)
        path = scope.get("path", "")
        info = RequestInfo(uuid.uuid4().hex, scope.get("method", ""), path, api_style(path))
        scope[SCOPE_KEY] = info
    return info
