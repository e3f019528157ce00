"""Ollama-native routes (docs/api.md), an allowlist: chat, generate, embed, tags, version.

Model management (/api/pull, /push, /create, /copy, /delete, /blobs/*, /show, /ps) is not
routed, so it is 404 for every method.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import schemas
from app.errors import OLLAMA
from app.openapi import request_body, responses
from app.routers.common import gateway_of, generation, listing
from app.runtime import Gateway

router = APIRouter(tags=["ollama"])
_NDJSON = "application/x-ndjson"


@router.post("/api/chat", summary="Chat (NDJSON stream unless stream=false)",
             responses=responses(OLLAMA, schemas.OllamaChatResponse, stream_media=_NDJSON),
             openapi_extra=request_body(schemas.OllamaChatRequest))
async def chat(request: Request) -> Response:
    return await generation(request, "/api/chat", lambda g: g.policy.ollama_chat)


@router.post("/api/generate", summary="Generate (NDJSON stream unless stream=false)",
             responses=responses(OLLAMA, schemas.OllamaGenerateResponse, stream_media=_NDJSON),
             openapi_extra=request_body(schemas.OllamaGenerateRequest))
async def generate(request: Request) -> Response:
    return await generation(request, "/api/generate", lambda g: g.policy.ollama_generate)


@router.post("/api/embed", summary="Embeddings",
             responses=responses(OLLAMA, schemas.OllamaEmbedResponse),
             openapi_extra=request_body(schemas.OllamaEmbedRequest))
async def embed(request: Request) -> Response:
    return await generation(request, "/api/embed", lambda g: g.policy.ollama_embed)


def _allowed_tags(gateway: Gateway) -> Any:
    def transform(data: Any) -> Any:
        models = data.get("models") if isinstance(data, dict) else None
        kept = [
            m for m in (models if isinstance(models, list) else [])
            if isinstance(m, dict) and gateway.policy.is_allowed(m.get("name") or m.get("model"))
        ]
        return {**(data if isinstance(data, dict) else {}), "models": kept}

    return transform


@router.get("/api/tags", summary="Models (only the allowed ones)",
            responses=responses(OLLAMA, schemas.OllamaTagsResponse, generation=False))
async def tags(request: Request) -> Response:
    return listing(request, "/api/tags", _allowed_tags(gateway_of(request)))


@router.get("/api/version", summary="Ollama's version",
            responses=responses(OLLAMA, schemas.OllamaVersionResponse, generation=False))
async def version(request: Request) -> Response:
    return listing(request, "/api/version", None)
