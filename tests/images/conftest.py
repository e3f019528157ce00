"""Fixtures of the engine tests (the private engine, the stand-in base, the gateway image) and
the closing note that counts the engine tests and names what stood in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.images import engine, standin, standin_ollama
from tests.images.common import APP_DOCKERFILE

RUN_TAG = uuid.uuid4().hex[:10]
ENGINE_TEST_TIMEOUT = 1200  # seconds, at least, for every engine test


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[ModuleType]:
    """The private engine (tests/images/engine.py), started here when none answers and then
    stopped at the end of the session; the test skips with the reason where it cannot start."""
    with engine.engine_session() as (ok, why):
        if not ok:
            pytest.skip(f"no private Docker engine: {why}")
        yield engine


@pytest.fixture(scope="session")
def standin_base(docker_engine: ModuleType) -> str:
    """app/Dockerfile's FROM name, tagged to the STAND-IN base on the private engine."""
    return engine.standin_python_base()


@pytest.fixture(scope="session")
def gateway_image(standin_base: str) -> Iterator[str]:
    """app/Dockerfile, unchanged, built on the stand-in base (context: the repository root)."""
    image = f"llm-api-test/gateway:{RUN_TAG}"
    engine.build_image(image, engine.REPO, dockerfile=APP_DOCKERFILE)
    yield image
    engine.docker("image", "rm", "--force", image, check=False)


# -- the closing note -------------------------------------------------------------------------

_ENGINE_TESTS: set[str] = set()
_REPORTS: dict[str, dict[str, Any]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # By marker: `"engine" in report.keywords` also matches a checkout directory named engine.
    engine_items = [item for item in items if item.get_closest_marker("engine")]
    _ENGINE_TESTS.update(item.nodeid for item in engine_items)
    # The first engine test of a session pays for the session fixtures (a cold stand-in base:
    # debootstrap, minutes on a busy machine) inside its own timeout: give each enough.
    for item in engine_items:
        marker = item.get_closest_marker("timeout")
        if marker is None or (marker.args and marker.args[0] < ENGINE_TEST_TIMEOUT):
            item.add_marker(pytest.mark.timeout(ENGINE_TEST_TIMEOUT), append=False)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid not in _ENGINE_TESTS:
        return
    entry = _REPORTS.setdefault(report.nodeid, {"outcome": "passed", "seconds": 0.0, "why": ""})
    entry["seconds"] += report.duration
    if report.skipped:
        entry["outcome"] = "skipped"
        longrepr = report.longrepr
        entry["why"] = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    elif report.failed and entry["outcome"] != "skipped":
        entry["outcome"] = "failed"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _REPORTS:
        return
    counts = {outcome: sum(e["outcome"] == outcome for e in _REPORTS.values())
              for outcome in ("passed", "failed", "skipped")}
    seconds = sum(e["seconds"] for e in _REPORTS.values())
    ran = counts["passed"] + counts["failed"]
    write = terminalreporter.write_line
    terminalreporter.section("engine tests (the project's private Docker engine)")
    write(f"{ran} ran ({counts['passed']} passed, {counts['failed']} failed), "
          f"{counts['skipped']} skipped, {seconds:.1f} s in engine tests "
          f"(fixtures included), engine {engine.DOCKER_HOST}")
    if ran:
        write(f"base image: {standin.description()}")
        write("Ollama upstream of the gateway image tests: the protocol double "
              "tests/ollama_double.py (a stand-in, no model runs)")
        write(f"Ollama image base: {standin_ollama.description()}")
    reasons = sorted({e["why"] for e in _REPORTS.values() if e["outcome"] == "skipped"})
    for reason in reasons:
        write(f"!!! ENGINE TESTS SKIPPED: {reason}", red=True, bold=True)
