"""One gateway (and a one-slot one) in front of one Ollama protocol double, for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

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
