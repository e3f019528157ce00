"""Model allowlist, output-token clamp, context estimate and refusals, as Ollama receives them."""

from __future__ import annotations

import json

import pytest

from app.errors import GatewayError
from app.policy import BYTES_PER_TOKEN, Policy, estimate_tokens, parse_json_object
from tests.app.harness import MODEL

CAP = 100
CONTEXT = 1000


@pytest.fixture
def policy() -> Policy:
    return Policy(["llama3.2:1b", "qwen2.5"], max_output_tokens=CAP, context_tokens=CONTEXT)


def refused(call, data) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        call(data)
    return caught.value


def test_missing_model_means_the_first_allowed(policy):
    prepared = policy.ollama_generate({"prompt": "hi"})
    assert prepared.model == "llama3.2:1b" and prepared.payload["model"] == "llama3.2:1b"
    assert policy.openai_chat({"messages": [], "model": ""}).model == "llama3.2:1b"


def test_tag_latest_is_the_same_model(policy):
    assert policy.ollama_generate({"model": "qwen2.5:latest"}).model == "qwen2.5:latest"
    assert policy.ollama_generate({"model": "qwen2.5"}).model == "qwen2.5"


@pytest.mark.parametrize("model", ["llama3.2", "llama3.2:8b", "LLAMA3.2:1B", "../x", "gpt-4"])
def test_other_models_are_404_naming_the_allowed(policy, model):
    error = refused(policy.ollama_chat, {"model": model})
    assert error.status == 404 and error.code == "model_not_found"
    assert "allowed models: llama3.2:1b, qwen2.5" in error.message


def test_non_string_model_is_400(policy):
    assert refused(policy.ollama_chat, {"model": 3}).status == 400


@pytest.mark.parametrize(("asked", "sent"), [
    (None, CAP), (10, 10), (CAP, CAP), (CAP + 1, CAP), (10**9, CAP), (-1, CAP), (-2, CAP), (0, 0),
])
def test_ollama_num_predict_is_clamped(policy, asked, sent):
    options = {} if asked is None else {"num_predict": asked}
    for call in (policy.ollama_chat, policy.ollama_generate):
        prepared = call({"options": dict(options)})
        assert prepared.payload["options"]["num_predict"] == sent


@pytest.mark.parametrize(("asked", "sent"), [(None, CAP), (5, 5), (CAP + 1, CAP), (0, 0)])
def test_openai_max_tokens_is_clamped(policy, asked, sent):
    data = {"messages": []} if asked is None else {"messages": [], "max_tokens": asked}
    assert policy.openai_chat(data).payload["max_tokens"] == sent
    completion = {"prompt": "p"} if asked is None else {"prompt": "p", "max_tokens": asked}
    assert policy.openai_completion(completion).payload["max_tokens"] == sent


def test_openai_max_completion_tokens_counts_too(policy):
    payload = policy.openai_chat({"messages": [], "max_completion_tokens": 7}).payload
    assert payload["max_tokens"] == 7 and payload["max_completion_tokens"] == 7


def test_negative_max_tokens_is_400(policy):
    assert refused(policy.openai_chat, {"messages": [], "max_tokens": -1}).status == 400


def test_num_predict_must_be_an_integer(policy):
    assert refused(policy.ollama_chat, {"options": {"num_predict": "9"}}).status == 400
    assert refused(policy.ollama_chat, {"options": {"num_predict": True}}).status == 400


def test_num_ctx_is_set_to_the_context_size_on_native_routes(policy):
    for call, data in ((policy.ollama_chat, {}), (policy.ollama_generate, {}),
                       (policy.ollama_embed, {"input": "x"})):
        payload = call({**data, "options": {"num_ctx": 128000}}).payload
        assert payload["options"]["num_ctx"] == CONTEXT


def test_keep_alive_is_removed(policy):
    assert "keep_alive" not in policy.ollama_generate({"keep_alive": 0}).payload
    assert "keep_alive" not in policy.ollama_chat({"keep_alive": "5m"}).payload
    assert "keep_alive" not in policy.ollama_embed({"input": "x", "keep_alive": -1}).payload


@pytest.mark.parametrize("option", ["num_gpu", "main_gpu", "num_thread", "use_mmap", "low_vram"])
def test_load_time_options_are_refused(policy, option):
    error = refused(policy.ollama_generate, {"options": {option: 1}})
    assert error.status == 400 and option in error.message


def test_estimate_is_bytes_over_three_rounded_up():
    assert BYTES_PER_TOKEN == 3
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc") == 1 and estimate_tokens("abcd") == 2
    assert estimate_tokens("é") == 1  # two bytes
    assert estimate_tokens("\ud800") == 1  # a lone surrogate does not crash the estimate


def test_prompt_over_the_context_is_400_and_under_it_passes(policy):
    at_limit = "a" * (CONTEXT * BYTES_PER_TOKEN)
    assert policy.ollama_generate({"prompt": at_limit}).payload["prompt"] == at_limit
    error = refused(policy.ollama_generate, {"prompt": at_limit + "a"})
    assert error.status == 400 and error.code == "context_length_exceeded"
    assert f"context size of {CONTEXT} tokens" in error.message
    assert at_limit not in error.message


def test_context_counts_system_suffix_and_previous_context(policy):
    third = "a" * (CONTEXT * BYTES_PER_TOKEN // 3)
    policy.ollama_generate({"prompt": third, "system": third, "suffix": third})
    assert refused(policy.ollama_generate,
                   {"prompt": third, "system": third, "suffix": third + "aaa"}).status == 400
    assert refused(policy.ollama_generate, {"prompt": "a", "context": [1] * CONTEXT}).status == 400


def test_chat_context_counts_every_message_and_its_overhead(policy):
    per_message = 46  # 42 estimated tokens of text + 4 of overhead
    messages = [{"role": "user", "content": "a" * 126}] * (CONTEXT // per_message)
    policy.ollama_chat({"messages": messages})
    policy.openai_chat({"messages": messages})
    more = messages + [{"role": "user", "content": "a" * 126}]
    assert refused(policy.ollama_chat, {"messages": more}).status == 400
    parts = [{"role": "user", "content": [{"type": "text", "text": "a" * 126}]}] * len(more)
    assert refused(policy.openai_chat, {"messages": parts}).status == 400


def test_each_embedding_input_must_fit(policy):
    big = "a" * (CONTEXT * BYTES_PER_TOKEN + 1)
    assert refused(policy.ollama_embed, {"input": ["ok", big]}).status == 400
    assert refused(policy.openai_embeddings, {"input": big}).status == 400
    policy.openai_embeddings({"input": ["a" * (CONTEXT * BYTES_PER_TOKEN)] * 3})


@pytest.mark.parametrize("body", [b"", b"[]", b"null", b"{", b'{"a": NaN}', b"[" * 100000,
                                  b"\xff\xfe"])
def test_body_must_be_a_json_object(body):
    with pytest.raises(GatewayError) as caught:
        parse_json_object(body)
    assert caught.value.status == 400


@pytest.mark.parametrize(("call", "data"), [
    ("ollama_chat", {"stream": "yes"}),
    ("ollama_chat", {"messages": [{"content": "no role"}]}),
    ("ollama_generate", {"prompt": 5}),
    ("ollama_embed", {}),
    ("openai_chat", {"model": MODEL}),
    ("openai_completion", {"prompt": ["a", "b"]}),
    ("openai_embeddings", {"input": 3}),
])
def test_wrong_types_are_400_without_echoing_input(policy, call, data):
    error = refused(getattr(policy, call), data)
    assert error.status == 400 and error.message.startswith("invalid request: ")
    assert "yes" not in error.message and "no role" not in error.message


@pytest.mark.slow
def test_what_ollama_receives(client, double):
    """Through a real gateway: the double sees the clamp, num_ctx and no keep_alive."""
    client.post("/api/generate", json={"prompt": "p", "stream": False, "keep_alive": 0,
                                       "options": {"num_predict": 10**6, "temperature": 0.1}})
    sent = double.requests_to("/api/generate")[-1].body
    assert sent["model"] == MODEL
    assert sent["options"] == {"num_predict": 2048, "temperature": 0.1, "num_ctx": 8192}
    assert "keep_alive" not in sent
    client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                              "max_tokens": 10**6, "unknown_field": [1]})
    sent = double.requests_to("/v1/chat/completions")[-1].body
    assert sent["max_tokens"] == 2048 and sent["unknown_field"] == [1]


@pytest.mark.slow
def test_refusals_never_reach_ollama(client, double):
    too_long = "word " * 20000
    responses = [
        client.post("/api/generate", json={"prompt": too_long}),
        client.post("/api/chat", json={"model": "notallowed:latest"}),
        client.post("/v1/completions", json={"prompt": "p", "max_tokens": -3}),
        client.post("/api/generate", json={"options": {"num_gpu": 99}}),
        client.post("/api/chat", content=b"not json"),
    ]
    assert [r.status_code for r in responses] == [400, 404, 400, 400, 400]
    assert json.loads(responses[0].text)["error"].startswith("prompt too long")
    assert double.records == []
