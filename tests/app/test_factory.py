"""create_app: refuses to start without keys, docs and CORS off unless asked for."""

from __future__ import annotations

import gc
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from app.factory import ConfigurationError, create_app
from app.settings import load_settings
from tests.app.harness import AUTH, gateway_settings

ROOT = Path(__file__).resolve().parents[2]
UNUSED_UPSTREAM = "http://127.0.0.1:9"


def test_no_keys_and_auth_not_disabled_refuses_to_start():
    with pytest.raises(ConfigurationError) as caught:
        create_app(load_settings(api_keys=""))
    assert "GATEWAY_API_KEYS" in str(caught.value)
    with pytest.raises(ConfigurationError):
        create_app(load_settings(api_keys=" , "))


@pytest.mark.slow
def test_uvicorn_exits_non_zero_with_one_line_on_stderr():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", "0",
         "--no-server-header"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gateway: refusing to start: GATEWAY_API_KEYS is empty")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_auth_disabled_must_be_explicit_and_then_serves_without_a_key(in_process):
    app = create_app(load_settings(api_keys="", auth_disabled=True,
                                   ollama_base_url=UNUSED_UPSTREAM))
    client = in_process(app)
    # Reaches the route (so no 401): the upstream is unreachable, hence 503.
    response = client.get("/api/version")
    assert response.status_code == 503


def test_docs_and_openapi_are_off_by_default(in_process):
    client = in_process(create_app(gateway_settings(UNUSED_UPSTREAM)))
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert client.get(path, headers=AUTH).status_code == 404, path


def test_docs_when_enabled_are_served_without_a_key(in_process):
    client = in_process(create_app(gateway_settings(UNUSED_UPSTREAM, docs_enabled=True)))
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/api/tags").status_code == 401


def test_cors_is_off_unless_origins_are_set(in_process):
    client = in_process(create_app(gateway_settings(UNUSED_UPSTREAM)))
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    response = client.options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    response = client.get("/healthz", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_when_origins_are_set(in_process):
    client = in_process(create_app(gateway_settings(
        UNUSED_UPSTREAM, cors_origins="https://app.example")))
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    allowed = client.options("/v1/chat/completions",
                             headers={"Origin": "https://app.example", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = client.options("/v1/chat/completions",
                           headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers


def test_cors_preflight_allows_the_js_sdks_stainless_headers(in_process):
    """openai-node sends x-stainless-* headers (the set changes between releases): a random
    one must pass, named back in Access-Control-Allow-Headers; an unknown header must not."""
    client = in_process(create_app(gateway_settings(
        UNUSED_UPSTREAM, cors_origins="https://app.example")))
    stainless = f"x-stainless-{secrets.token_hex(4)}"
    asked = f"authorization, content-type, x-stainless-os, {stainless}, X-Stainless-Retry-Count"
    allowed = client.options("/v1/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": asked})
    assert allowed.status_code == 200, allowed.text
    named = {h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-stainless-os", stainless,
            "x-stainless-retry-count"} <= named
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    refused = client.options("/v1/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": f"{stainless}, x-not-allowed"})
    assert refused.status_code == 400
    only_prefixed = client.options("/api/chat", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": stainless})
    assert only_prefixed.status_code == 200
    assert only_prefixed.headers["access-control-allow-headers"] == stainless


@pytest.mark.slow
def test_the_server_entry_point_tunes_the_garbage_collector():
    """app.main (uvicorn's import) freezes what start-up built and raises the young threshold;
    create_app alone (the tests) leaves the collector as it is."""
    probe = ("import gc; before = gc.get_threshold(); import app.main; "
             "print(before, gc.get_threshold(), gc.get_freeze_count() > 10000)")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
           "GATEWAY_API_KEYS": "k" * 32}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split("\n")[-2] == "(700, 10, 10) (7000, 10, 10) True"
    create_app(gateway_settings(UNUSED_UPSTREAM))
    assert gc.get_threshold() == (700, 10, 10)
