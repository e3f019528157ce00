from __future__ import annotations

import pytest

from tests.security.common import rendering


@pytest.fixture
def rendered():
    """rendered(env): every template as that environment deploys it (tools/render.py)."""
    return rendering
