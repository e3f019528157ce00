"""Every row of the client compatibility table (tests/clients/table.py), run for real."""

from __future__ import annotations

import pytest

from tests.clients.table import TABLE, Row

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("row", TABLE, ids=lambda row: row.id)
def test_client_call(fresh, row: Row):
    row.run(fresh)
