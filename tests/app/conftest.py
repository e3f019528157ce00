"""Fixtures for the gateway tests: the Ollama double and gateways in front of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.app.harness import AUTH, InProcess, ServerThread, start_gateway
from tests.ollama_double import ThreadedDouble


@pytest.fixture
def double() -> Iterator[ThreadedDouble]:
    with ThreadedDouble() as running:
        yield running


@pytest.fixture
def start(double: ThreadedDouble) -> Iterator[Callable[..., tuple[ServerThread, Any]]]:
    """start(**settings) -> (server, app): a gateway in front of the double, stopped after."""
    servers: list[ServerThread] = []

    def _start(upstream_url: str | None = None, graceful_seconds: float = 5.0,
               **overrides: Any) -> tuple[ServerThread, Any]:
        server, app = start_gateway(upstream_url or double.url, graceful_seconds, **overrides)
        servers.append(server)
        return server, app

    yield _start
    for server in servers:
        server.stop()


@pytest.fixture
def gateway(start: Callable[..., tuple[ServerThread, Any]]) -> ServerThread:
    return start()[0]


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=10.0) as http:
        yield http


@pytest.fixture
def in_process() -> Iterator[Callable[[Any], InProcess]]:
    """in_process(app) -> a sync in-process client, closed after the test."""
    clients: list[InProcess] = []

    def make(app: Any) -> InProcess:
        clients.append(InProcess(app))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.app.harness import FIGURES

    if FIGURES:
        terminalreporter.section("gateway fault figures (measured)")
        for name, value in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{name}: {value}")
