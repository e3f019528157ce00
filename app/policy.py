"""What the gateway allows through, applied to a parsed request body before it goes to Ollama.

Decisions (documented here and in the OpenAPI descriptions):

- Model: must be in GATEWAY_MODELS ("name" and "name:latest" are the same model); missing means
  the first (default) one; anything else is 404 naming the allowed models.
- Output tokens: CLAMPED, not refused. Ollama's options.num_predict and OpenAI's max_tokens /
  max_completion_tokens are set to GATEWAY_MAX_OUTPUT_TOKENS when missing, when above it, or
  (Ollama: -1 infinite, -2 fill the context) when negative. OpenAI-route negatives are a client
  error (400), as OpenAI itself treats them. Clamping keeps clients that never send a limit (most
  SDKs) working and still bounds every generation's GPU time.
- Context: Ollama silently truncates a prompt longer than its context and answers 200. The
  gateway has no tokenizer, so it estimates conservatively: tokens = ceil(UTF-8 bytes / 3) for
  text, plus 4 per chat message for the template, plus the exact length of a /api/generate
  `context` array. Real tokenizers average about 4 bytes per token on English text and code, so
  the estimate errs towards refusing (by about a third); it can under-count scripts that take
  more tokens per byte (some CJK text) and ignores images. A prompt estimated above
  GATEWAY_CONTEXT_TOKENS is refused with 400. On Ollama-native routes options.num_ctx is set to
  GATEWAY_CONTEXT_TOKENS so that Ollama and the gateway agree on the size; the OpenAI-compatible
  routes have no such field (docs/openai.md), so the Ollama server must run with
  OLLAMA_CONTEXT_LENGTH equal to GATEWAY_CONTEXT_TOKENS for them.
- keep_alive is removed (a client could otherwise unload the model for everyone); load-time
  options that would force a model reload (num_gpu, num_thread, ...) are refused with 400 when
  they are SET. An option whose value is null is unset (Ollama reads a null option as absent;
  LangChain's OllamaEmbeddings sends every option it knows, most of them null): nulls are
  dropped before forwarding, whatever the option.
- /api/show answers only for allowed models and passes on the fields listed in SHOW_FIELDS;
  the modelfile's FROM and ADAPTER lines (server paths to blobs) are replaced.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from app import schemas
from app.errors import GatewayError, scrub

if TYPE_CHECKING:
    from app.settings import Settings

BYTES_PER_TOKEN = 3
MESSAGE_OVERHEAD_TOKENS = 4
LOAD_TIME_OPTIONS = frozenset({
    "num_gpu", "main_gpu", "num_thread", "num_batch", "use_mmap", "use_mlock", "low_vram",
    "numa", "vocab_only", "f16_kv", "logits_all", "embedding_only",
})


@dataclasses.dataclass
class Prepared:
    payload: dict[str, Any]  # what goes to Ollama
    model: str
    stream: bool


def _bad(message: str, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, message, code=code)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 400 (never echoing the body)."""
    if not body:
        raise _bad("request body must be a JSON object")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise _bad("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad("request body must be a JSON object")
    return data


def validate(model: type[BaseModel], data: dict[str, Any]) -> None:
    try:
        model.model_validate(data, strict=True)
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise _bad(f"invalid request: {where}: {error['msg']}") from None


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN)


def _normalize(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


class Policy:
    def __init__(self, models: Iterable[str], max_output_tokens: int, context_tokens: int) -> None:
        self.models = tuple(models)
        self.allowed = {_normalize(m) for m in self.models}
        self.max_output_tokens = max_output_tokens
        self.context_tokens = context_tokens

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(settings.models, settings.max_output_tokens, settings.context_tokens)

    def is_allowed(self, name: Any) -> bool:
        return isinstance(name, str) and _normalize(name) in self.allowed

    def model(self, data: dict[str, Any]) -> str:
        value = data.get("model")
        if value is None or value == "":
            data["model"] = self.models[0]
            return self.models[0]
        if not self.is_allowed(value):
            raise self.not_found(value)
        return value

    def _check_context(self, tokens: int) -> None:
        if tokens > self.context_tokens:
            raise _bad(
                f"prompt too long: about {tokens} tokens (estimated as UTF-8 bytes / "
                f"{BYTES_PER_TOKEN}) exceeds the context size of {self.context_tokens} tokens",
                code="context_length_exceeded",
            )

    def _ollama_options(self, data: dict[str, Any], generation: bool) -> None:
        options = {k: v for k, v in (data.get("options") or {}).items() if v is not None}
        refused = sorted(LOAD_TIME_OPTIONS.intersection(options))
        if refused:
            raise _bad(f"options not allowed through the gateway: {', '.join(refused)}")
        if generation:
            limit = options.get("num_predict")
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
                raise _bad("invalid request: options.num_predict: must be an integer")
            if limit is None or limit < 0 or limit > self.max_output_tokens:
                options["num_predict"] = self.max_output_tokens
        options["num_ctx"] = self.context_tokens
        data["options"] = options
        data.pop("keep_alive", None)

    def _openai_max_tokens(self, data: dict[str, Any], fields: tuple[str, ...]) -> None:
        limits = []
        for field in fields:
            value = data.get(field)
            if value is None:
                continue
            if value < 0:
                raise _bad(f"invalid request: {field}: must not be negative")
            limits.append(value)
        wanted = min(limits) if limits else self.max_output_tokens
        data["max_tokens"] = min(wanted, self.max_output_tokens)
        if "max_completion_tokens" in fields and data.get("max_completion_tokens") is not None:
            data["max_completion_tokens"] = data["max_tokens"]

    # -- one function per route ------------------------------------------------------------

    def ollama_chat(self, data: dict[str, Any]) -> Prepared:
        validate(schemas.OllamaChatRequest, data)
        model = self.model(data)
        self._ollama_options(data, generation=True)
        tokens = sum(
            estimate_tokens(m.get("content") or "") + MESSAGE_OVERHEAD_TOKENS
            + (estimate_tokens(json.dumps(m["tool_calls"])) if m.get("tool_calls") else 0)
            for m in data.get("messages") or []
        )
        if data.get("tools"):
            tokens += estimate_tokens(json.dumps(data["tools"]))
        self._check_context(tokens)
        return Prepared(data, model, data.get("stream") is not False)

    def ollama_generate(self, data: dict[str, Any]) -> Prepared:
        validate(schemas.OllamaGenerateRequest, data)
        model = self.model(data)
        self._ollama_options(data, generation=True)
        text = "".join(data.get(k) or "" for k in ("prompt", "system", "suffix"))
        tokens = estimate_tokens(text) + len(data.get("context") or [])
        self._check_context(tokens)
        return Prepared(data, model, data.get("stream") is not False)

    def ollama_embed(self, data: dict[str, Any]) -> Prepared:
        validate(schemas.OllamaEmbedRequest, data)
        model = self.model(data)
        self._ollama_options(data, generation=False)
        self._check_inputs(data["input"])
        return Prepared(data, model, False)

    def ollama_embeddings(self, data: dict[str, Any]) -> Prepared:
        """The legacy /api/embeddings (one `prompt`, one `embedding` back)."""
        validate(schemas.OllamaEmbeddingsRequest, data)
        model = self.model(data)
        self._ollama_options(data, generation=False)
        self._check_context(estimate_tokens(data.get("prompt") or ""))
        return Prepared(data, model, False)

    def ollama_show(self, data: dict[str, Any]) -> Prepared:
        validate(schemas.OllamaShowRequest, data)
        if data.get("model") in (None, "") and isinstance(data.get("name"), str):
            data["model"] = data.pop("name")  # the field's old name, still accepted by Ollama
        model = self.model(data)
        return Prepared({"model": model, "verbose": data.get("verbose") is True}, model, False)

    def openai_chat(self, data: dict[str, Any]) -> Prepared:
        validate(schemas.OpenAIChatRequest, data)
        model = self.model(data)
        self._openai_max_tokens(data, ("max_tokens", "max_completion_tokens"))
        data.pop("keep_alive", None)
        tokens = 0
        for message in data["messages"]:
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(
                    part.get("text", "") for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
            tokens += estimate_tokens(content or "") + MESSAGE_OVERHEAD_TOKENS
            if message.get("tool_calls"):
                tokens += estimate_tokens(json.dumps(message["tool_calls"]))
        if data.get("tools"):
            tokens += estimate_tokens(json.dumps(data["tools"]))
        self._check_context(tokens)
        return Prepared(data, model, data.get("stream") is True)

    def openai_completion(self, data: dict[str, Any]) -> Prepared:
        validate(schemas.OpenAICompletionRequest, data)
        model = self.model(data)
        self._openai_max_tokens(data, ("max_tokens",))
        data.pop("keep_alive", None)
        self._check_context(estimate_tokens(data["prompt"] + (data.get("suffix") or "")))
        return Prepared(data, model, data.get("stream") is True)

    def openai_embeddings(self, data: dict[str, Any]) -> Prepared:
        validate(schemas.OpenAIEmbeddingRequest, data)
        model = self.model(data)
        data.pop("keep_alive", None)
        self._check_inputs(data["input"])
        return Prepared(data, model, False)

    def not_found(self, name: object) -> GatewayError:
        """The answer for a model that is not allowed (or does not exist): one for both."""
        return GatewayError(
            404,
            f"model '{scrub(str(name))[:100]}' is not available here; allowed models: "
            + ", ".join(self.models),
            code="model_not_found",
        )

    def allowed_entries(self, entries: Any, *keys: str) -> list[dict[str, Any]]:
        """The entries of a listing (Ollama's tags/ps, OpenAI's models) naming an allowed model
        under the first of `keys` that is present."""
        kept = []
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and self.is_allowed(
                    next((entry[k] for k in keys if entry.get(k)), None)):
                kept.append(entry)
        return kept

    def _check_inputs(self, inputs: str | list[str]) -> None:
        # Each input is embedded on its own, so each must fit the context.
        for text in [inputs] if isinstance(inputs, str) else inputs:
            self._check_context(estimate_tokens(text))


# /api/show fields passed to clients (docs/api.md "Show Model Information"): what editors and
# chat UIs read (capabilities, template, parameters, details, model_info, the license). Any
# other field, present or future, is dropped: it might carry a server path.
SHOW_FIELDS = ("license", "modelfile", "parameters", "template", "system", "details",
               "model_info", "projector_info", "capabilities", "modified_at", "messages",
               "tensors")
# Modelfile instructions whose argument is a file on the server (docs/modelfile.md):
# `ollama show` writes `FROM /…/models/blobs/sha256-…` for the weights.
_PATH_INSTRUCTIONS = ("FROM", "ADAPTER")


def show_answer(model: str) -> Any:
    """The transform of an /api/show answer: allowed fields only, no server paths."""

    def transform(data: Any) -> Any:
        if not isinstance(data, dict):
            return {}
        kept = {k: data[k] for k in SHOW_FIELDS if k in data}
        if isinstance(kept.get("modelfile"), str):
            kept["modelfile"] = _without_paths(kept["modelfile"], model)
        return kept

    return transform


def _without_paths(modelfile: str, model: str) -> str:
    lines = []
    for line in modelfile.split("\n"):
        word = line.split(maxsplit=1)[0].upper() if line.strip() else ""
        if word == "FROM":
            line = f"FROM {model}"
        elif word in _PATH_INSTRUCTIONS:
            continue
        lines.append(line)
    return "\n".join(lines)
