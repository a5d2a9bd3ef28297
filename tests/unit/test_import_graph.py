"""No import cycles among aegir's modules.

What is checked: every ``*.py`` file under ``aegir/`` is parsed with ``ast`` (nothing is imported or run). Every
``import`` / ``from ... import`` statement anywhere in the file -- at module level, inside functions and methods,
under ``if TYPE_CHECKING:`` or ``try:`` -- that names an aegir module adds an edge from that file's module to the
imported module: ``from aegir.x import y`` points at ``aegir.x.y`` when that is a module, and at ``aegir.x``
otherwise (plus ``aegir.x`` itself when it is a package, since Python imports it first); relative imports are
resolved against the file's package. The graph of these edges must have no cycle. Counting function-level imports
too means a cycle cannot be hidden by moving one of its imports into a function; such an import is then free to
stay local only to defer a heavy library (torch, Lightning, transformers) until it is needed.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "aegir"


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module and package of aegir."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The aegir modules one import statement imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        found = set()
        for name in names:
            while name and name not in modules:  # `import aegir.x.y as z`: the longest prefix that is a module
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
        return found
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    found = {base} if base in modules else set()
    found |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the aegir modules it imports anywhere in its file (module level or inside functions)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= _targets(node, name, is_package, modules) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of modules (first == last), or None when it is acyclic."""
    state: dict[str, int] = {}  # absent: unvisited, 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_aegir_has_no_import_cycles() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_module_level_and_function_level_imports() -> None:
    graph = import_graph()
    assert "aegir.run.single" in graph["aegir.main"]  # module level
    assert "aegir.loops.factory" in graph["aegir.run.single"]  # inside run_single (defers Lightning)
    assert "aegir.errors" in graph["aegir.exit_status"]


def test_find_cycle_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
