"""The OpenAPI document: every status a route can answer, request bodies, the bearer scheme.

Served at /openapi.json only when GATEWAY_DOCS_ENABLED is true; always available in process
(app.openapi()) for the fuzz tests.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app import schemas
from app.errors import OLLAMA

BEARER = "bearerAuth"

_DESCRIPTIONS = {
    400: "Invalid request (not JSON, wrong types, prompt over the context size, refused "
         "option), or a 4xx passed through from Ollama.",
    401: "Missing or wrong `Authorization: Bearer <key>`.",
    404: "Model not allowed here (the message names the allowed models), or Ollama does not "
         "have it.",
    408: "The request body did not arrive within GATEWAY_REQUEST_BODY_TIMEOUT_SECONDS.",
    413: "Request body larger than GATEWAY_MAX_BODY_BYTES.",
    429: "Every concurrency slot stayed busy for GATEWAY_QUEUE_TIMEOUT_SECONDS; retry after "
         "Retry-After seconds.",
    502: "Ollama failed (5xx), broke the connection or answered something unusable.",
    503: "Ollama is unreachable, or the gateway is shutting down.",
    504: "Ollama was silent longer than the read timeout, or exceeded the total timeout.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
        "required": True,
    }
}


def responses(
    style: str,
    ok: type[BaseModel],
    *,
    stream_media: str | None = None,
    generation: bool = True,
) -> dict[int | str, dict[str, Any]]:
    error = schemas.OllamaError if style == OLLAMA else schemas.OpenAIError
    ok_doc: dict[str, Any] = {"model": ok, "description": "Ollama's answer, passed through."}
    if stream_media is not None:
        ok_doc["description"] = (f"Ollama's answer: application/json when not streaming, "
                                 f"{stream_media} when streaming (passed through as it comes).")
        ok_doc["content"] = {stream_media: {}}
    statuses = [400, 401, 404, 408, 413, 429, 502, 503, 504] if generation else \
        [400, 401, 404, 408, 413, 502, 503, 504]
    result: dict[int | str, dict[str, Any]] = {200: ok_doc}
    for status in statuses:
        result[status] = {"model": error, "description": _DESCRIPTIONS[status]}
    if generation:
        result[429]["headers"] = _RETRY_AFTER
    return result


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": "JSON (any Content-Type is read as JSON, as Ollama does).",
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def install(app: FastAPI, public_paths: AbstractSet[str]) -> None:
    """Replace app.openapi with a builder that adds request schemas and the security scheme."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, definitions = models_json_schema(
            [(model, "validation") for model in schemas.REQUEST_MODELS],
            ref_template="#/components/schemas/{model}",
        )
        components = document.setdefault("components", {})
        component_schemas = components.setdefault("schemas", {})
        for name, schema in definitions.get("$defs", {}).items():
            component_schemas.setdefault(name, schema)
        components["securitySchemes"] = {
            BEARER: {"type": "http", "scheme": "bearer", "description": "An active API key."}
        }
        for path, item in document.get("paths", {}).items():
            for operation in item.values():
                operation["security"] = [] if path in public_paths else [{BEARER: []}]
                # FastAPI documents a 422 for any route with a parameter; the only one here
                # is a path string that always validates, and errors are 400 anyway.
                operation.get("responses", {}).pop("422", None)
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]
