"""Every python snippet of README.md and docs/*.md is run by a test: each carries a ``(name)``
marker, and each marker is one a test runs (a new snippet needs its test first)."""

from __future__ import annotations

from tests.snippets import DOCS, marker_of, python_blocks

RUN_BY = {
    "readme-loader": "tests/faults/test_readme_loader.py",
    "readme-hf": "tests/test_interop.py::test_the_docs_loader_snippets_run_on_a_build",
    "docs-shards-loaders": "tests/test_interop.py::test_the_docs_loader_snippets_run_on_a_build",
}


def test_every_python_snippet_is_marked_and_run():
    found = {}
    for path in DOCS:
        for block in python_blocks(path):
            marker = marker_of(block)
            assert marker is not None, f"{path.name}: a python block without a (readme-/docs-name) marker:\n{block[:200]}"
            assert marker not in found, f"({marker}) marks two blocks"
            found[marker] = path.name
    assert set(found) == set(RUN_BY), f"snippets {sorted(set(found) ^ set(RUN_BY))}: add or remove their test in RUN_BY"
