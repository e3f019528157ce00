"""/healthz is the process; /readyz is Ollama answering with the default model loaded."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.app.harness import free_port

pytestmark = pytest.mark.slow


def test_healthz_needs_nothing(start):
    server, _ = start(upstream_url=f"http://127.0.0.1:{free_port()}")
    response = httpx.get(server.url + "/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_when_the_default_model_is_loaded(gateway, double):
    response = httpx.get(gateway.url + "/readyz")  # no key
    assert response.status_code == 200 and response.json() == {"status": "ready"}
    assert double.requests_to("/api/ps")


def test_readyz_is_503_when_the_model_is_not_loaded(start, double):
    double.set(loaded=False)
    server, _ = start(ready_cache_seconds=0)
    response = httpx.get(server.url + "/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not_ready", "reason": "model_not_loaded"}


def test_readyz_is_503_when_only_another_model_is_loaded(start, double):
    double.set(models=("qwen2.5:0.5b",))
    server, _ = start(ready_cache_seconds=0)
    assert httpx.get(server.url + "/readyz").status_code == 503


def test_readyz_is_503_when_ollama_is_away(start):
    server, _ = start(upstream_url=f"http://127.0.0.1:{free_port()}")
    response = httpx.get(server.url + "/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "upstream_unavailable"


def test_readyz_answer_is_cached_for_a_few_seconds(start, double):
    server, _ = start(ready_cache_seconds=0.5)
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/readyz").status_code == 200
        probes = len(double.requests_to("/api/ps"))
        double.set(loaded=False)
        for _ in range(5):
            assert http.get("/readyz").status_code == 200  # cached
        assert len(double.requests_to("/api/ps")) == probes
        time.sleep(0.6)
        assert http.get("/readyz").status_code == 503
        assert len(double.requests_to("/api/ps")) == probes + 1
