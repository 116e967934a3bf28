"""The package has no import circle, type-checking-only ones included.

Each concept has one home; a module that needs another's concept imports it, never the
other way round as well. The graph is read from the source (`tests/import_graph.py`).
"""

from __future__ import annotations

import doctest
import textwrap
from pathlib import Path

import dsollama

from . import import_graph
from .import_graph import graph_of, import_circles, shortest_circle


def _package(root: Path, files: dict[str, str]) -> Path:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return root / "pkg"


def test_dsollama_has_no_import_circle() -> None:
    root = Path(dsollama.__file__).parent
    graph = graph_of(root)
    circles = import_circles(root)
    described = "\n".join(
        f"- {', '.join(c)}\n  e.g. {' -> '.join(shortest_circle(graph, c))}" for c in circles
    )
    assert not circles, (
        "modules that import each other (give the concept they share a module of its own, "
        "which both import):\n" + described
    )


def test_a_circle_only_the_type_checker_follows_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/fake.py": "from . import handlers\n",
            "pkg/handlers.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from .fake import Fake
            """,
            "pkg/sub/__init__.py": "",
            "pkg/sub/leaf.py": "from ..fake import Fake\n",
        },
    )
    assert import_circles(root) == [["pkg.fake", "pkg.handlers"]]


def test_imports_inside_functions_and_absolute_ones_count(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "def lazy():\n    from pkg.sub import leaf\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/leaf.py": "import pkg\n",
        },
    )
    assert import_circles(root) == [["pkg", "pkg.sub.leaf"]]


def test_a_layered_package_has_none(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "from .api import run\n",
            "pkg/api.py": "from . import state, handlers\nimport json\n",
            "pkg/handlers.py": "from .state import State\n",
            "pkg/state.py": "from collections import deque\n",
        },
    )
    assert graph_of(root) == {
        "pkg": {"pkg.api"},
        "pkg.api": {"pkg.state", "pkg.handlers"},
        "pkg.handlers": {"pkg.state"},
        "pkg.state": set(),
    }
    assert import_circles(root) == []


def test_the_helpers_examples() -> None:
    result = doctest.testmod(import_graph)
    assert result.attempted > 0
    assert result.failed == 0
