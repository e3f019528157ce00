"""tools/docs.py: generated sections are written, verified, cached by input, and never lost."""

from __future__ import annotations

import sys
import types

import pytest

from tools import docs

PAGE = "intro\n<!-- BEGIN generated:table -->\n{body}\n<!-- END generated:table -->\nafter\n"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository with one page, one input file and a producer that counts its calls."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.txt").write_text("a\nb\n")
    calls = []

    def produce() -> str:
        calls.append(1)
        rows = (tmp_path / "data" / "rows.txt").read_text().split()
        return "\n".join(f"| {row} |" for row in rows)

    module = types.ModuleType("docs_test_producer")
    module.produce = produce  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "docs_test_producer", module)
    section = docs.Section("table", "PAGE.md", "docs_test_producer:produce", ("data/*.txt",))
    (tmp_path / "PAGE.md").write_text(PAGE.format(body="| a |\n| b |"))
    return types.SimpleNamespace(path=tmp_path, sections=(section,), calls=calls,
                                 page=tmp_path / "PAGE.md")


def run(repo, check=False):
    return docs.update(repo.path, check=check, sections=repo.sections,
                       cache=repo.path / ".cache" / "sections.json")


@pytest.mark.parametrize("change, stale", [
    (lambda r: None, []),
    (lambda r: (r.path / "data" / "rows.txt").write_text("a\nb\nc\n"), ["PAGE.md: table"]),
    (lambda r: r.page.write_text(PAGE.format(body="| a |\n| edited by hand |")), ["PAGE.md: table"]),
    (lambda r: r.page.write_text(PAGE.format(body="| a |\n| b |").replace("intro", "prose")), []),
])
def test_check_names_exactly_the_stale_sections_and_writes_nothing(repo, change, stale):
    assert run(repo) == []  # current; warms the cache
    change(repo)
    before = repo.page.read_text()
    assert run(repo, check=True) == stale
    assert repo.page.read_text() == before, "--check wrote the page"


def test_write_replaces_only_the_section_body(repo):
    (repo.path / "data" / "rows.txt").write_text("x\n")
    assert run(repo) == ["PAGE.md: table"]
    assert repo.page.read_text() == PAGE.format(body="| x |")
    assert run(repo, check=True) == []


def test_an_unchanged_section_is_not_produced_again(repo):
    run(repo)
    calls = len(repo.calls)
    run(repo, check=True)
    run(repo)
    assert len(repo.calls) == calls, "the producer ran although nothing it reads changed"
    (repo.path / "data" / "rows.txt").write_text("a\n")
    run(repo, check=True)
    assert len(repo.calls) == calls + 1


def test_a_page_without_the_markers_is_an_error_naming_page_and_section(repo):
    repo.page.write_text("no markers here\n")
    with pytest.raises(docs.DocsError, match=r"PAGE.md: no section 'generated:table'"):
        run(repo, check=True)
    assert repo.page.read_text() == "no markers here\n"


def test_every_declared_section_exists_in_its_page():
    for section in docs.SECTIONS:
        text = (docs.REPO / section.page).read_text()
        assert docs._markers(section.name).search(text), f"{section.page}: {section.name}"


def test_a_producer_that_fails_is_an_error_naming_page_section_and_cause(repo, monkeypatch):
    def broken() -> str:
        raise RuntimeError("node not found: apt-get install -y nodejs npm")

    monkeypatch.setattr(sys.modules["docs_test_producer"], "produce", broken)
    (repo.path / "data" / "rows.txt").write_text("changed\n")
    with pytest.raises(docs.DocsError, match=r"PAGE.md: section 'table' could not be produced: "
                                             r"RuntimeError: node not found"):
        run(repo)
