"""Fixtures of the tools tests (tests/tools/deploy/ has its own `stubs` for the deploy steps)."""

from __future__ import annotations

import pytest

from tests.tools.preflight_support import stubbed_clients


@pytest.fixture
def stubs():
    """Stubbed AWS clients for the preflight checks; every stubber must be used up."""
    yield from stubbed_clients()
