"""Imports point one way: datasets <- models <- (metrics, stages) <- pipeline <- (report, training) <- eval <- cli.

Checked on the source text (every import, also the lazy ones inside functions), so a lower layer
that reaches up fails here before it becomes a cycle; and importing the report or the dataset
readers does not import Ray (a subprocess proves it).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "hoiforge"
LAYER = {
    "errors": 0,
    "datasets": 1,
    "models": 2,
    "metrics": 3,  # pure metrics: a trainer validates with them, eval scores the papers' tables with them
    "stages": 3,
    "pipeline": 4,
    "report": 5,
    "training": 5,
    "eval": 6,  # generates with a trained run (training), scores with metrics
    "cli": 7,
}
# Same-rank packages that may use each other: none.
ALLOWED_SIDEWAYS: set[tuple[str, str]] = set()


def _package(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0] if len(rel) > 1 else Path(rel[0]).stem


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("hoiforge."):
            found.append((node.lineno, node.module.split(".")[1]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("hoiforge.")]
    return found


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path):
    here = _package(path)
    if here not in LAYER:
        return  # __init__, __main__ of the package itself
    for line, target in _imports(path):
        if target not in LAYER or target == here or (here, target) in ALLOWED_SIDEWAYS:
            continue
        assert LAYER[target] < LAYER[here], f"{path.relative_to(SRC)}:{line} ({here}) imports hoiforge.{target}, a higher layer"


def test_report_and_readers_do_not_import_ray():
    code = (
        "import sys; import hoiforge.report.html, hoiforge.report.viewer, hoiforge.datasets.reader, hoiforge.datasets.validate;"
        "bad = [m for m in ('ray',) if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# -- import circles ----------------------------------------------------------------------------
def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in SRC.rglob("*.py")}


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def _edges(path: Path, lazy: bool) -> set[str]:
    """The hoiforge modules ``path`` imports: at module level (also inside if/try), with ``lazy`` also
    inside functions; never what only a type checker reads (``if TYPE_CHECKING:``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not lazy:
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                # "from pkg import mod" imports the module pkg.mod; "from mod import name" the module mod.
                found.update(f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in MODULES else child.module for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


@pytest.mark.parametrize("lazy", [False, True], ids=["module-level", "with-lazy-imports"])
def test_no_import_circles(lazy: bool):
    graph = {m: _edges(p, lazy) - {m} for m, p in MODULES.items()}
    assert _cycles(graph) == []


def test_the_circle_finder_finds_circles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
