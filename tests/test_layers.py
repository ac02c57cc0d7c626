"""Imports point one way: datasets <- models <- stages <- pipeline <- (report, training, eval) <- cli.

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
    "stages": 3,
    "pipeline": 4,
    "report": 5,
    "training": 5,
    "eval": 5,
    "cli": 6,
}
# Same-rank packages that may use each other: eval scores what training generates, and a trainer
# reports the papers' own metrics while it validates (the WD module's mIoU from eval.segmentation).
ALLOWED_SIDEWAYS = {("eval", "training"), ("training", "eval")}


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
