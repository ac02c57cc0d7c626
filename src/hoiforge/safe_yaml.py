"""The one YAML loader of hoiforge (recipes, RUN configs, model metadata): ``yaml.safe_load`` that
refuses documents whose aliases expand beyond a small tree.

``safe_load`` already refuses code (no python tags), but not a billion-laughs document: nine
anchors of ten aliases each are a few hundred bytes, load instantly as shared references, and
expand to 10^9 nodes in whatever walks them next (pydantic's validation, the ``repr`` of an error
message: a recipe's ``name`` held ``hoiforge build`` at 3.3 GB, a RUN's config.yaml hung
``generate``). Here the composed document is counted as it would expand, before anything is
constructed; anchors and aliases within ``MAX_NODES`` stay allowed (ours: a recipe or config is at most
a few thousand nodes, so 100,000 leaves room without letting a walk take more than milliseconds).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_NODES = 100_000
MAX_BYTES = 4 * 1024 * 1024  # a recipe or config is a few kB


class YamlBomb(yaml.YAMLError):
    """A document too large as it expands (aliases of aliases, recursive aliases, deep nesting)."""


def _expanded(node: yaml.Node, memo: dict[int, int], open_: set[int]) -> int:
    """Nodes of ``node``'s tree once every alias is expanded; YamlBomb as soon as it passes MAX_NODES."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_:
        raise YamlBomb("the document refers to itself through an alias (a recursive anchor)")
    open_.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded(child, memo, open_)
        if total > MAX_NODES:
            raise YamlBomb(f"the document expands to more than {MAX_NODES} values through its aliases (&anchor / *alias); write it out")
    open_.discard(key)
    memo[key] = total
    return total


class _BoundedLoader(yaml.SafeLoader):
    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _expanded(node, {}, set())
        return node


def load(text: str | bytes) -> Any:
    """The document in ``text``, as ``yaml.safe_load`` gives it; yaml.YAMLError (YamlBomb) when it is unbounded."""
    if len(text) > MAX_BYTES:
        raise YamlBomb(f"the document is {len(text)} bytes, above {MAX_BYTES}")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass: no Python objects
    except RecursionError:
        raise YamlBomb("the document nests too deeply") from None
