"""JSON log lines on stdout: one per request (logger "gateway.access") and operational events.

What is logged is chosen field by field (see app.context.RequestInfo.log_fields): ids, route,
model, status, timings, token counts, flags, the caller's key id. Never request or response
bodies, prompt or completion text, keys or query strings. uvicorn's own access log (which
prints query strings) is switched off here; the image's CMD also passes --no-access-log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

ACCESS = "gateway.access"
EVENTS = "gateway"


class StdoutHandler(logging.Handler):
    """Writes to whatever sys.stdout is at the time (pytest's capture swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # a log line must never break a request
            self.handleError(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        return json.dumps(payload, separators=(",", ":"), default=str)


_configured = False


def configure_logging(level: str = "info") -> None:
    """Idempotent: JSON to stdout for the gateway's loggers; uvicorn's access log off."""
    global _configured
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    for name in (EVENTS, ACCESS):
        logger = logging.getLogger(name)
        logger.setLevel(numeric)
        if not _configured:
            handler = StdoutHandler()
            handler.setFormatter(JsonFormatter())
            logger.addHandler(handler)
            logger.propagate = False
    # The access logger of the gateway itself stays at INFO whatever the level: one line per
    # request is the contract, unless the operator asks for warnings only.
    if numeric > logging.INFO:
        logging.getLogger(ACCESS).setLevel(numeric)
    # uvicorn's access log prints the request line, query string included.
    logging.getLogger("uvicorn.access").disabled = True
    _configured = True


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    logging.getLogger(EVENTS).log(level, message, extra={"fields": fields})


def access(fields: dict[str, Any]) -> None:
    logging.getLogger(ACCESS).info("request", extra={"fields": fields})
