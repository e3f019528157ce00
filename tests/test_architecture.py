"""The shape of the source: small modules, imports only downward, no cycles.

Layers, lowest first: app/contract.py (the ground: standard library only), then the gateway
(app/) and the templates (stacks/), then the tools (tools/, generate.py, bench/). A module may
import its own layer and the layers below it, never one above; the gateway and the templates
never import each other except through app/contract.py.

Inside tools/, the loose modules (tools/*.py: params, render, files, ...) are the ground the tool
packages (tools/*/: deploy, preflight, cost, review, security_gate) build on: a loose module never
imports a package, and the packages import each other without a cycle. Every import counts,
also one inside a function (that is where a cycle hides).
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
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """Project modules that source (the text of module) imports, wherever the import stands."""
    found = set()
    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
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


# --- tools/: loose modules below the packages, packages without a cycle -------------------------

TOOLS = REPO / "tools"
# A cycle the packages still have, each with what removes it. Listed so that a new one fails
# and so that this entry fails once the cycle is gone (then it must be deleted).
KNOWN_PACKAGE_CYCLES = {
    # deploy runs preflight first; preflight reuses deploy's target, image records and roll
    # preferences. An AWS access package that both import removes it.
    ("tools.deploy", "tools.preflight"),
}


def tools_unit(module: str) -> str | None:
    """The loose module or the package of tools/ that module belongs to (None: not in tools/)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "tools" and len(parts) > 1 else None


def is_package(unit: str) -> bool:
    return (REPO / Path(*unit.split("."))).is_dir()


def tools_graph() -> dict[str, set[str]]:
    """tools unit -> the other tools units it imports (module level or inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        source = tools_unit(module_name(path))
        if source is None:
            continue
        graph.setdefault(source, set())
        graph[source] |= {unit for unit in map(tools_unit, imports(path))
                          if unit is not None and unit != source}
    return graph


def test_the_import_reader_sees_imports_inside_functions():
    source = ("import tools.params\n"
              "def run():\n    from tools.deploy import apply\n"
              "class C:\n    def m(self):\n        import tools.render\n")
    found = imports_in(source, "tools.preflight.cli")
    assert {"tools.params", "tools.deploy.apply", "tools.render"} <= found


def test_the_tools_graph_knows_loose_modules_and_packages():
    graph = tools_graph()
    assert {unit for unit in graph if is_package(unit)} == {
        f"tools.{p.name}" for p in TOOLS.iterdir() if (p / "__init__.py").is_file()}
    assert {unit for unit in graph if not is_package(unit)} == {
        f"tools.{p.stem}" for p in TOOLS.glob("*.py") if p.name != "__init__.py"}


def test_a_loose_tools_module_never_imports_a_tools_package():
    graph = tools_graph()
    upward = sorted(f"{unit} -> {target}" for unit, targets in graph.items() if not is_package(unit)
                    for target in targets if is_package(target))
    assert upward == [], "move what both need into a loose module (or a package below both)"


def package_cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Each cycle among the packages, as its sorted members."""
    packages = {unit: {t for t in targets if is_package(t)}
                for unit, targets in graph.items() if is_package(unit)}
    found = set()
    for start in packages:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in packages.get(node, ()):
                if nxt == start:
                    found.add(tuple(sorted(trail)))
                elif nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
    return found


def test_package_cycles_are_found_wherever_the_import_stands():
    graph = {"tools.review": {"tools.cost"}, "tools.cost": {"tools.params"},
             "tools.deploy": {"tools.preflight"}, "tools.preflight": {"tools.deploy"}}
    assert package_cycles(graph) == {("tools.deploy", "tools.preflight")}


def test_tools_packages_import_each_other_without_a_new_cycle():
    cycles = package_cycles(tools_graph())
    assert cycles - KNOWN_PACKAGE_CYCLES == set(), "a package imports one that imports it back"
    assert KNOWN_PACKAGE_CYCLES - cycles == set(), "this cycle is gone: delete its entry"
