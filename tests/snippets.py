"""The python snippets of README.md and docs/*.md, each marked ``(<name>)`` in a comment, so tests
run exactly what a reader copies."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
MARKER = re.compile(r"\((readme|docs)-[a-z0-9-]+\)")


def python_blocks(path: Path) -> list[str]:
    """Every ```python block of a markdown file, dedented (README's sit inside list items)."""
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)]


def marker_of(block: str) -> str | None:
    m = MARKER.search(block)
    return m.group(0)[1:-1] if m else None


def snippet(marker: str) -> str:
    """The one block marked ``(marker)`` across the docs."""
    found = [b for path in DOCS for b in python_blocks(path) if marker_of(b) == marker]
    assert len(found) == 1, f"{len(found)} python blocks marked ({marker})"
    return found[0]


def run(marker: str, out: Path) -> dict:
    """Run a snippet with its ``out = "/data/hoihuman"`` pointed at ``out``; returns its globals."""
    code = snippet(marker)
    assert 'out = "/data/hoihuman"' in code, f"({marker}) sets no OUT"
    scope: dict = {"__name__": f"snippet_{marker.replace('-', '_')}"}
    exec(compile(code.replace('out = "/data/hoihuman"', f"out = {str(out)!r}", 1), marker, "exec"), scope)
    return scope
