"""Request and response shapes, after Ollama's docs/api.md and docs/openai.md.

Request models validate what the gateway reads (strict JSON types; unknown fields are allowed
and passed on to Ollama, which ignores what it does not know). Response models document what
Ollama answers (the gateway passes bodies through; it does not rebuild them). Both feed the
OpenAPI document; the request models are attached by app.openapi because the routes read and
parse the body themselves (Ollama accepts JSON whatever the Content-Type, and so must we).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_KEEP_ALIVE = ("Ignored: the gateway removes keep_alive (Ollama's own OLLAMA_KEEP_ALIVE governs "
               "how long the model stays loaded; a client must not unload it).")
_OPTIONS = ("Ollama model options; a null value means unset (dropped). num_predict is capped "
            "at GATEWAY_MAX_OUTPUT_TOKENS (missing or "
            "negative means the cap); num_ctx is set to GATEWAY_CONTEXT_TOKENS; load-time options "
            "(num_gpu, main_gpu, num_thread, num_batch, use_mmap, use_mlock, low_vram, numa, "
            "vocab_only) are refused with 400 when set.")
_MODEL = "One of the allowed models (GATEWAY_MODELS); missing means the first of them."
_MAX_TOKENS = ("Capped at GATEWAY_MAX_OUTPUT_TOKENS; missing means the cap. Negative values are "
               "refused with 400.")


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- Ollama-native requests ------------------------------------------------------------------


class OllamaMessage(_Request):
    role: str
    content: str | None = None
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    thinking: str | None = None


class OllamaChatRequest(_Request):
    model: str | None = Field(None, description=_MODEL)
    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = Field(None, description=_OPTIONS)
    stream: bool | None = Field(None, description="true (default): NDJSON stream.")
    think: bool | str | None = None
    keep_alive: str | int | float | None = Field(None, description=_KEEP_ALIVE)


class OllamaGenerateRequest(_Request):
    model: str | None = Field(None, description=_MODEL)
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[str] | None = None
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = Field(None, description=_OPTIONS)
    stream: bool | None = Field(None, description="true (default): NDJSON stream.")
    think: bool | str | None = None
    keep_alive: str | int | float | None = Field(None, description=_KEEP_ALIVE)


class OllamaEmbedRequest(_Request):
    model: str | None = Field(None, description=_MODEL)
    input: str | list[str]
    truncate: bool | None = None
    dimensions: int | None = None
    options: dict[str, Any] | None = Field(None, description=_OPTIONS)
    keep_alive: str | int | float | None = Field(None, description=_KEEP_ALIVE)


class OllamaEmbeddingsRequest(_Request):
    """The legacy /api/embeddings (superseded by /api/embed; docs/api.md "Generate Embedding")."""

    model: str | None = Field(None, description=_MODEL)
    prompt: str | None = None
    options: dict[str, Any] | None = Field(None, description=_OPTIONS)
    keep_alive: str | int | float | None = Field(None, description=_KEEP_ALIVE)


class OllamaShowRequest(_Request):
    model: str | None = Field(None, description=_MODEL)
    name: str | None = Field(None, description="The old name of `model`.")
    verbose: bool | None = None


# -- OpenAI-compatible requests --------------------------------------------------------------


class OpenAIMessage(_Request):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class OpenAIChatRequest(_Request):
    model: str | None = Field(None, description=_MODEL)
    messages: list[OpenAIMessage]
    stream: bool | None = Field(None, description="true: SSE stream; default false.")
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, description=_MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, description=_MAX_TOKENS)
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None


class OpenAICompletionRequest(_Request):
    model: str | None = Field(None, description=_MODEL)
    prompt: str
    suffix: str | None = None
    stream: bool | None = Field(None, description="true: SSE stream; default false.")
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, description=_MAX_TOKENS)
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


class OpenAIEmbeddingRequest(_Request):
    model: str | None = Field(None, description=_MODEL)
    input: str | list[str]
    encoding_format: str | None = None
    dimensions: int | None = None


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaEmbedRequest,
    OllamaEmbeddingsRequest,
    OllamaShowRequest,
    OpenAIChatRequest,
    OpenAICompletionRequest,
    OpenAIEmbeddingRequest,
)


# -- errors ----------------------------------------------------------------------------------


class OllamaError(_Response):
    error: str
    request_id: str | None = None


class OpenAIErrorDetail(_Response):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    request_id: str | None = None


class OpenAIError(_Response):
    error: OpenAIErrorDetail


# -- Ollama-native responses -----------------------------------------------------------------


class OllamaChatMessage(_Response):
    role: str
    content: str


class OllamaChatResponse(_Response):
    model: str
    created_at: str
    message: OllamaChatMessage | None = None
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None


class OllamaGenerateResponse(_Response):
    model: str
    created_at: str
    response: str
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None


class OllamaEmbedResponse(_Response):
    model: str
    embeddings: list[list[float]]
    prompt_eval_count: int | None = None


class OllamaModelDetails(_Response):
    format: str | None = None
    family: str | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None


class OllamaModel(_Response):
    name: str
    model: str | None = None
    modified_at: str | None = None
    size: int | None = None
    digest: str | None = None
    details: OllamaModelDetails | None = None


class OllamaTagsResponse(_Response):
    models: list[OllamaModel]


class OllamaEmbeddingsResponse(_Response):
    embedding: list[float]


class OllamaShowResponse(_Response):
    """Only these fields pass (app.policy.SHOW_FIELDS); the modelfile's FROM line names the
    model, not the server's blob path."""

    license: str | None = None
    modelfile: str | None = None
    parameters: str | None = None
    template: str | None = None
    system: str | None = None
    details: OllamaModelDetails | None = None
    model_info: dict[str, Any] | None = None
    capabilities: list[str] | None = None
    modified_at: str | None = None


class OllamaRunningModel(OllamaModel):
    expires_at: str | None = None
    size_vram: int | None = None


class OllamaPsResponse(_Response):
    models: list[OllamaRunningModel]


class OllamaVersionResponse(_Response):
    version: str


# -- OpenAI-compatible responses -------------------------------------------------------------


class OpenAIUsage(_Response):
    prompt_tokens: int
    completion_tokens: int | None = None
    total_tokens: int


class OpenAIChatChoiceMessage(_Response):
    role: str
    content: str | None = None


class OpenAIChatChoice(_Response):
    index: int
    message: OpenAIChatChoiceMessage
    finish_reason: str | None = None


class _OpenAIResult(_Response):
    """The envelope every OpenAI completion shares."""

    id: str
    object: str
    created: int
    model: str


class OpenAIChatCompletion(_OpenAIResult):
    choices: list[OpenAIChatChoice]
    usage: OpenAIUsage | None = None


class OpenAICompletionChoice(_Response):
    text: str
    index: int
    finish_reason: str | None = None


class OpenAICompletion(_OpenAIResult):
    choices: list[OpenAICompletionChoice]
    usage: OpenAIUsage | None = None


class OpenAIEmbedding(_Response):
    object: str
    embedding: list[float] | str
    index: int


class OpenAIEmbeddingList(_Response):
    object: str
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage | None = None


class OpenAIModel(_Response):
    id: str
    object: str
    created: int
    owned_by: str


class OpenAIModelList(_Response):
    object: str
    data: list[OpenAIModel]


# -- health ----------------------------------------------------------------------------------


class Health(_Response):
    status: str
    reason: str | None = None
