"""OpenAI-compatible routes (Ollama's docs/openai.md): chat, completions, embeddings, models."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import schemas
from app.errors import OPENAI
from app.openapi import request_body, responses
from app.routers.common import allowed_listing, gateway_of, generation, listing

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


@router.get("/v1/models", summary="Models (only the allowed ones)",
            responses=responses(OPENAI, schemas.OpenAIModelList, generation=False))
async def models(request: Request) -> Response:
    return allowed_listing(request, "/v1/models", "data", ("id",), envelope={"object": "list"})


# {model:path}: model names may hold a slash (a namespace: "library/llama3.2:1b").
@router.get("/v1/models/{model:path}", summary="One model (allowed models only)",
            responses=responses(OPENAI, schemas.OpenAIModel, generation=False))
async def model(request: Request, model: str) -> Response:
    gateway = gateway_of(request)
    if not gateway.policy.is_allowed(model):
        raise gateway.policy.not_found(model)
    return listing(request, "/v1/models/" + quote(model, safe="/:"), None)
