"""Ollama-native routes (docs/api.md), an allowlist: chat, generate, embed, embeddings (legacy),
show, tags, ps, version. Model-specific answers exist only for allowed models.

Model management (/api/pull, /push, /create, /copy, /delete, /blobs/*) is not routed, so it is
404 for every method.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import schemas
from app.errors import OLLAMA
from app.openapi import request_body, responses
from app.policy import show_answer
from app.routers.common import allowed_listing, generation, listing, model_question

router = APIRouter(tags=["ollama"])
_NDJSON = "application/x-ndjson"
_MODEL_KEYS = ("name", "model")


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


@router.post("/api/embeddings", summary="Embedding, legacy (superseded by /api/embed)",
             responses=responses(OLLAMA, schemas.OllamaEmbeddingsResponse),
             openapi_extra=request_body(schemas.OllamaEmbeddingsRequest))
async def embeddings(request: Request) -> Response:
    return await generation(request, "/api/embeddings", lambda g: g.policy.ollama_embeddings)


@router.post("/api/show", summary="Model details (allowed models; fields in SHOW_FIELDS)",
             responses=responses(OLLAMA, schemas.OllamaShowResponse, generation=False),
             openapi_extra=request_body(schemas.OllamaShowRequest))
async def show(request: Request) -> Response:
    return await model_question(request, "/api/show", lambda g: g.policy.ollama_show,
                                lambda prepared: show_answer(prepared.model))


@router.get("/api/tags", summary="Models (only the allowed ones)",
            responses=responses(OLLAMA, schemas.OllamaTagsResponse, generation=False))
async def tags(request: Request) -> Response:
    return allowed_listing(request, "/api/tags", "models", _MODEL_KEYS)


@router.get("/api/ps", summary="Loaded models (only the allowed ones)",
            responses=responses(OLLAMA, schemas.OllamaPsResponse, generation=False))
async def ps(request: Request) -> Response:
    return allowed_listing(request, "/api/ps", "models", _MODEL_KEYS)


@router.get("/api/version", summary="Ollama's version",
            responses=responses(OLLAMA, schemas.OllamaVersionResponse, generation=False))
async def version(request: Request) -> Response:
    return listing(request, "/api/version", None)
