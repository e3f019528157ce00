"""Routes clients call before using a model (issue 14, item 3): show, ps, legacy embeddings,
OpenAI model retrieve. Allowed models only; anything else gets the unknown-model answer, in the
route's shape. The upstream is the Ollama protocol double (tests/ollama_double.py)."""

from __future__ import annotations

import pytest

from app.policy import SHOW_FIELDS
from tests.app.harness import MODEL

pytestmark = pytest.mark.slow

NOT_ALLOWED = "notallowed:latest"  # the double has it; the gateway's allowlist does not


def test_show_passes_the_listed_fields_without_server_paths(client, double):
    response = client.post("/api/show", json={"model": MODEL})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) <= set(SHOW_FIELDS)
    assert {"template", "parameters", "capabilities", "details", "model_info"} <= set(body)
    assert "server_debug" not in body  # an unlisted field is dropped
    assert "/blobs/" not in response.text and "/root/" not in response.text
    assert f"FROM {MODEL}" in body["modelfile"]
    assert "ADAPTER" not in body["modelfile"]
    assert double.requests_to("/api/show")[-1].body == {"model": MODEL, "verbose": False}


def test_show_accepts_the_old_name_field(client):
    assert client.post("/api/show", json={"name": MODEL}).status_code == 200


@pytest.mark.parametrize(("method", "path", "body", "openai"), [
    ("POST", "/api/show", {"model": NOT_ALLOWED}, False),
    ("POST", "/api/embeddings", {"model": NOT_ALLOWED, "prompt": "x"}, False),
    ("POST", "/api/chat", {"model": NOT_ALLOWED, "messages": []}, False),
    ("GET", f"/v1/models/{NOT_ALLOWED}", None, True),
    ("POST", "/v1/chat/completions", {"model": NOT_ALLOWED, "messages": []}, True),
])
def test_a_model_not_allowed_gets_the_unknown_model_answer(client, double, method, path, body,
                                                           openai):
    response = client.request(method, path, json=body)
    assert response.status_code == 404
    error = response.json()["error"]
    message = error["message"] if openai else error
    assert message.startswith(f"model '{NOT_ALLOWED}' is not available here")
    if openai:
        assert error["code"] == "model_not_found"
    assert not double.records, "nothing reached Ollama"


def test_model_retrieve_for_an_allowed_model(client):
    response = client.get(f"/v1/models/{MODEL}")
    assert response.status_code == 200
    assert response.json()["id"] == MODEL


def test_ps_lists_only_allowed_models(client):
    names = [m["name"] for m in client.get("/api/ps").json()["models"]]
    assert MODEL in names and NOT_ALLOWED not in names


def test_legacy_embeddings(client, double):
    response = client.post("/api/embeddings", json={"model": MODEL, "prompt": "hello"})
    assert response.status_code == 200
    assert len(response.json()["embedding"]) == 8
    sent = double.requests_to("/api/embeddings")[-1].body
    assert "keep_alive" not in sent and sent["options"]["num_ctx"] > 0


def test_null_options_are_unset_not_refused(client, double):
    """LangChain's OllamaEmbeddings sends every option, most null (issue 14, item 2)."""
    options = {"num_gpu": None, "num_thread": None, "mirostat": None, "temperature": None,
               "stop": None, "num_ctx": None}
    response = client.post("/api/embed", json={"model": MODEL, "input": "x",
                                               "options": options})
    assert response.status_code == 200, response.text
    sent = double.requests_to("/api/embed")[-1].body["options"]
    assert None not in sent.values() and "num_gpu" not in sent
    refused = client.post("/api/embed", json={"model": MODEL, "input": "x",
                                              "options": {"num_gpu": 1}})
    assert refused.status_code == 400 and "num_gpu" in refused.json()["error"]


def test_admin_routes_stay_unreachable(client, double):
    for path in ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"):
        assert client.post(path, json={"model": MODEL}).status_code == 404, path
    assert not double.records
