"""Generated sections of the README and docs/ pages: one mechanism for every generated table.

A page holds a marked section per table:

    <!-- BEGIN generated:NAME -->
    ...the table...
    <!-- END generated:NAME -->

`generate.py` writes every section (after the templates) and `generate.py --check` verifies them.
A section is produced again only when the files it is made from (SECTIONS[NAME].inputs) or its
body changed since the last time it was found current: a hash of both is kept in an uncommitted
cache (.cache/docs-sections.json). So `generate.py --check` stays fast when nothing changed, and
a slow producer (one that renders every environment or runs node) runs only when its inputs
move; a fresh clone produces every section once. A section edited by hand is stale.

A producer is "module:function" returning the section's Markdown; it is imported only when the
section must be produced, so generation does not pay for the imports of tables it does not touch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.files import write_atomically

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Section:
    name: str
    page: str  # relative to the repository root
    producer: str  # "module:function" -> str (Markdown, no trailing newline)
    inputs: tuple[str, ...]  # globs relative to the repository root; the producer's module is added

    def produce(self) -> str:
        module, function = self.producer.split(":")
        produced: Callable[[], str] = getattr(importlib.import_module(module), function)
        return produced().rstrip("\n")

    def input_files(self, repo: Path) -> list[Path]:
        module_file = repo / (self.producer.split(":")[0].replace(".", "/") + ".py")
        files = {module_file} if module_file.is_file() else set()
        for pattern in self.inputs:
            files.update(path for path in repo.glob(pattern) if path.is_file())
        return sorted(files)


SECTIONS: tuple[Section, ...] = (
    Section("security-exceptions", "docs/security.md", "tools.security_gate.exclusions:exceptions_table",
            ("templates/*.json", "security/*.yaml", "stacks/base.py")),
    Section("parameters", "docs/parameters.md", "tools.reference:parameters_table",
            ("templates/root.json", "params/*.json")),
    Section("cost", "docs/cost.md", "tools.cost.report:readme_section",
            ("templates/*.json", "params/*", "prices/*.json", "tools/cost/*.py", "stacks/gpu.py",
             "app/contract.py")),
    Section("review-sample", "docs/review.md", "tools.review.sample:readme_section",
            ("templates/*.json", "params/*.json", "tools/review/*", "tools/render.py",
             "tools/cfn_types.py", "tools/cost/*.py", "prices/*.json")),
    Section("client-compatibility", "docs/clients.md", "tests.clients.table:render",
            ("tests/clients/*.py", "requirements-dev.txt")),
    Section("client-compatibility-real-model", "docs/clients.md",
            "tests.clients.real_model:render",
            ("tests/clients/*.py", "tests/llamacpp.py", "requirements-dev.txt")),
    Section("timeout-budget", "docs/infrastructure.md", "tools.contract_files:budget_table",
            ("app/contract.py",)),
    Section("wake-budget", "docs/infrastructure.md", "tools.wake_budget:readme_section",
            ("params/*.json", "templates/root.json", "stacks/wake.py", "stacks/model_load.py",
             "stacks/gpu.py")),
)


class DocsError(ValueError):
    """A page or a marker is missing or malformed; the message names the page and the section."""


CACHE = REPO / ".cache" / "docs-sections.json"


def _markers(name: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- BEGIN generated:{re.escape(name)} -->\n"
                      rf"(?P<body>.*?)\n?<!-- END generated:{re.escape(name)} -->", re.DOTALL)


def fingerprint(section: Section, body: str, repo: Path = REPO) -> str:
    digest = hashlib.sha256()
    for path in section.input_files(repo):
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(body.encode())
    return digest.hexdigest()[:16]


def _block(name: str, body: str) -> str:
    return f"<!-- BEGIN generated:{name} -->\n{body}\n<!-- END generated:{name} -->"


def _update_page(text: str, section: Section, repo: Path, known: dict[str, str]) -> tuple[str, bool]:
    """(the page's text with this section current, whether it had to change)."""
    match = _markers(section.name).search(text)
    if match is None:
        raise DocsError(f"{section.page}: no section 'generated:{section.name}'; add the two lines "
                        f"'<!-- BEGIN generated:{section.name} -->' and "
                        f"'<!-- END generated:{section.name} -->' where the table belongs")
    if known.get(section.name) == fingerprint(section, match.group("body"), repo):
        return text, False  # neither its inputs nor its body changed since it was current
    try:
        fresh = section.produce()
    except Exception as error:  # a producer's own error (a missing tool, a bad input): name it
        raise DocsError(f"{section.page}: section '{section.name}' could not be produced: "
                        f"{type(error).__name__}: {error}") from error
    known[section.name] = fingerprint(section, fresh, repo)
    block = _block(section.name, fresh)
    if match.group(0) == block:
        return text, False
    return text[:match.start()] + block + text[match.end():], True


def update(repo: Path = REPO, check: bool = False, sections: tuple[Section, ...] = SECTIONS,
           cache: Path | None = None) -> list[str]:
    """Write (or, with check, only find) every stale section; returns 'page: name' of each."""
    cache = cache or repo / CACHE.relative_to(REPO)
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    stale: list[str] = []
    for page in sorted({s.page for s in sections}):
        path = repo / page
        if not path.is_file():
            raise DocsError(f"{page}: page missing (it holds generated sections)")
        original = text = path.read_text()
        for section in (s for s in sections if s.page == page):
            text, changed = _update_page(text, section, repo, known)
            if changed:
                stale.append(f"{page}: {section.name}")
                known.pop(section.name, None)  # current only once written
        if text != original and not check:
            write_atomically(path, text)
            for section in (s for s in sections if s.page == page):
                body = _markers(section.name).search(text).group("body")  # type: ignore[union-attr]
                known[section.name] = fingerprint(section, body, repo)
    with contextlib.suppress(OSError):  # only a cache: a read-only checkout still checks
        write_atomically(cache, json.dumps(known, sort_keys=True, indent=2) + "\n")
    return stale
