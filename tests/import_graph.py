"""The import graph of a package, read from its source, and the circles in it.

Read, not executed: every ``import`` and ``from ... import`` anywhere in a module counts,
including those under ``if TYPE_CHECKING:`` and inside functions. A circle that only the
type checker follows is still two modules that cannot be understood one without the
other, which is what the "no import circle" rule is about.

An edge goes to the module an import names: ``from .pkg import mod`` points at
``pkg.mod`` when that is a module, ``from .mod import name`` at ``mod``. The packages a
dotted name passes through are not edges (every submodule would otherwise depend on its
package's ``__init__`` and the other way round).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Graph", "graph_of", "import_circles", "shortest_circle", "strongly_connected"]

Graph = Mapping[str, Set[str]]
"Module name → the package's modules it imports."


@dataclass(frozen=True)
class _Module:
    path: Path
    is_package: bool
    "An ``__init__.py``: its relative imports start from itself, not from its parent."


def _modules(root: Path) -> dict[str, _Module]:
    found: dict[str, _Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = _Module(path, is_package)
    return found


def _imported_by(
    node: ast.Import | ast.ImportFrom, importer: str, module: _Module, known: Set[str]
) -> set[str]:
    """The package's modules one import statement depends on."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        package = importer.split(".") if module.is_package else importer.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    # `from package import name`: a name that is a submodule is the dependency; the
    # package itself only for names that are not (objects of its `__init__`).
    submodules = {f"{source}.{a.name}" for a in node.names} & set(known)
    if len(submodules) == len(node.names) or source not in known:
        return submodules
    return {source, *submodules}


def _imports(importer: str, module: _Module, known: Set[str]) -> set[str]:
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= _imported_by(node, importer, module, known)
    imported.discard(importer)
    return imported


def graph_of(root: Path) -> dict[str, set[str]]:
    """The graph of the package whose folder is ``root`` (its ``__init__.py`` inside)."""
    modules = _modules(root)
    return {name: _imports(name, module, modules.keys()) for name, module in modules.items()}


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, in the order they complete.

    Iterative, so a deep package cannot hit the recursion limit.

    >>> strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    [['a', 'b'], ['c']]
    """
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    # The depth-first path: each node with the iterator over its neighbours still to visit.
    frames: list[tuple[str, Iterator[str]]] = []

    def enter(node: str) -> None:
        index[node] = lowest[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        frames.append((node, iter(sorted(graph.get(node, ())))))

    for start in graph:
        if start in index:
            continue
        enter(start)
        while frames:
            node, neighbours = frames[-1]
            for neighbour in neighbours:
                if neighbour not in index:
                    enter(neighbour)
                    break
                if neighbour in on_stack:
                    lowest[node] = min(lowest[node], index[neighbour])
            else:
                frames.pop()
                if frames:
                    parent = frames[-1][0]
                    lowest[parent] = min(lowest[parent], lowest[node])
                if lowest[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def shortest_circle(graph: Graph, component: list[str]) -> list[str]:
    """One shortest way round a component, from its first member back to it.

    >>> shortest_circle({"a": {"b"}, "b": {"c", "a"}, "c": {"a"}}, ["a", "b", "c"])
    ['a', 'b', 'a']
    """
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for neighbour in sorted(graph.get(node, ())):
            if neighbour == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if neighbour in members and neighbour not in came_from:
                came_from[neighbour] = node
                queue.append(neighbour)
    raise ValueError(f"{component} is not a circle of this graph")


def import_circles(root: Path) -> list[list[str]]:
    """Every set of modules of the package that import each other, directly or not."""
    return [c for c in strongly_connected(graph_of(root)) if len(c) > 1]
