"""OpenAI-compatible routes (Ollama's docs/openai.md): chat, completions, embeddings, models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import schemas
from app.errors import OPENAI
from app.openapi import request_body, responses
from app.routers.common import gateway_of, generation, listing
from app.runtime import Gateway

router = APIRouter(tags=["openai"])
_SSE = "text/event-stream"


@router.post("/v1/chat/completions", summary="Chat completions (SSE when stream=true)",
             responses=responses(OPENAI, schemas.OpenAIChatCompletion, stream_media=_SSE),
             openapi_extra=request_body(schemas.OpenAIChatRequest))
async def chat_completions(request: Request) -> Response:
    return await generation(request, "/v1/chat/completions", lambda g: g.policy.openai_chat)


@router.post("/v1/completions", summary="Completions (SSE when stream=true)",
             responses=responses(OPENAI, schemas.OpenAICompletion, stream_media=_SSE),
             openapi_extra=request_body(schemas.OpenAICompletionRequest))
async def completions(request: Request) -> Response:
    return await generation(request, "/v1/completions", lambda g: g.policy.openai_completion)


@router.post("/v1/embeddings", summary="Embeddings",
             responses=responses(OPENAI, schemas.OpenAIEmbeddingList),
             openapi_extra=request_body(schemas.OpenAIEmbeddingRequest))
async def embeddings(request: Request) -> Response:
    return await generation(request, "/v1/embeddings", lambda g: g.policy.openai_embeddings)


def _allowed_models(gateway: Gateway) -> Any:
    def transform(data: Any) -> Any:
        items = data.get("data") if isinstance(data, dict) else None
        kept = [
            m for m in (items if isinstance(items, list) else [])
            if isinstance(m, dict) and gateway.policy.is_allowed(m.get("id"))
        ]
        return {"object": "list", "data": kept}

    return transform


@router.get("/v1/models", summary="Models (only the allowed ones)",
            responses=responses(OPENAI, schemas.OpenAIModelList, generation=False))
async def models(request: Request) -> Response:
    return listing(request, "/v1/models", _allowed_models(gateway_of(request)))
