"""The client compatibility table: well formed, and the README shows what it says."""

from __future__ import annotations

from tests.clients.table import TABLE, render


def test_every_refusal_says_why_and_every_row_is_unique():
    ids = [row.id for row in TABLE]
    assert len(ids) == len(set(ids))
    for row in TABLE:
        assert row.result.startswith(("works", "refused", "raises")), row
        assert bool(row.reason) == row.result.startswith("refused"), row


def test_the_table_covers_each_client():
    assert {row.client for row in TABLE} == {"ollama", "openai", "langchain-ollama",
                                             "langchain-openai"}


def test_the_readme_says_the_upstream_was_the_double():
    assert "not a model" in render() and "Ollama protocol double" in render()
