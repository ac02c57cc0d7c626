"""Matching human labels to inputs by relative path, never by file stem alone.

A label is named by its path relative to the labels folder (or the COCO ``file_name``), an input
by its path relative to the input folder, list folder or tar (the listing's ``relpath``); both
without extension. ``a/001.jpg`` and ``b/001.jpg`` are then two inputs with two labels, and a
name two labels claim (``001.png`` and ``001.PNG``, two COCO images ``a/001.jpg`` and
``a/001.png``) is refused as ambiguous instead of silently picking one.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def label_key(relpath: str) -> str:
    """The matching key of a relative path: '/'-separated, normalised, without the extension."""
    path = posixpath.normpath(relpath.replace("\\", "/")).lstrip("/")
    stem, ext = posixpath.splitext(path)
    return stem if ext else path


class AmbiguousLabel(ValueError):
    """Several labels claim one key; the message names them."""


class LabelIndex(Generic[T]):
    """key → the one item naming it; keys claimed by several items are kept apart as ambiguous."""

    def __init__(self, named: Iterable[tuple[str, T]]):
        found: dict[str, list[tuple[str, T]]] = defaultdict(list)
        for name, item in named:
            found[label_key(name)].append((name, item))
        self.unique = {k: v[0][1] for k, v in found.items() if len(v) == 1}
        self.ambiguous = {k: [name for name, _ in v] for k, v in found.items() if len(v) > 1}
        self.by_stem: dict[str, list[str]] = defaultdict(list)
        for k in found:
            self.by_stem[posixpath.basename(k)].append(k)

    def keys(self) -> set[str]:
        return set(self.unique) | set(self.ambiguous)

    def get(self, key: str) -> T | None:
        """The item for an input's key (``label_key`` of its relative path); None if none; AmbiguousLabel if several."""
        if key in self.ambiguous:
            raise AmbiguousLabel(f"{len(self.ambiguous[key])} labels claim {key!r} ({', '.join(self.ambiguous[key][:4])}); keep one")
        return self.unique.get(key)

    def near_misses(self, key: str) -> list[str]:
        """Label keys with the input's file stem but another path (what stem matching would have taken)."""
        return [k for k in self.by_stem.get(posixpath.basename(key), []) if k != key]
