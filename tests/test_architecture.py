"""The shape of the source: small modules, imports only downward, no cycles.

Layers, lowest first: app/contract.py (the ground: standard library only), then the gateway
(app/) and the templates (stacks/), then the tools (tools/, generate.py, bench/). A module may
import its own layer and the layers below it, never one above; the gateway and the templates
never import each other except through app/contract.py.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 500
SOURCES = sorted([*REPO.glob("app/**/*.py"), *REPO.glob("stacks/**/*.py"),
                  *REPO.glob("tools/**/*.py"), *REPO.glob("bench/**/*.py"), REPO / "generate.py"])


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p) for p in SOURCES}


def imports(path: Path) -> set[str]:
    """Project modules this file imports at module level or inside functions."""
    found = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            for alias in node.names:  # `from app import contract` imports app.contract
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {name for name in found if name in MODULES}


def layer(module: str) -> int:
    if module == "app.contract":
        return 0
    if module.startswith(("app", "stacks")):
        return 1
    return 2


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_source_module_is_over_the_line_limit(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, (
        f"{path.relative_to(REPO)}: split it by job (at most {MAX_LINES} lines)")


def test_the_contract_is_the_ground_standard_library_only():
    path = REPO / "app" / "contract.py"
    tree = ast.parse(path.read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_imports_go_only_downward():
    upward = []
    for path in SOURCES:
        source = module_name(path)
        for target in imports(path):
            crosses = (layer(source) == layer(target) == 1
                       and source.startswith("app") != target.startswith("app"))
            if layer(target) > layer(source) or crosses:
                upward.append(f"{source} -> {target}")
    assert upward == []


def test_the_import_graph_has_no_cycle():
    graph = {module_name(p): {t for t in imports(p) if t != module_name(p)} for p in SOURCES}
    # a package's __init__ is imported with its submodules: count edges to the package too
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodule is not a cycle
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
