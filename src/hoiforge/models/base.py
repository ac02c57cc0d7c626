"""Task protocols the stages call. A backend implements one of them for one library.

Backends import their library in ``__init__`` (so a missing package fails in ``setup()`` with a
clear message) and offer ``check()``, a cheap classmethod the driver calls before work starts.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from hoiforge.errors import BackendUnavailable


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float
    label: str = "person"
    source: str = ""  # which detector (or detectors) found it

    def to_json(self) -> dict:
        d = asdict(self)
        d["box"] = [round(float(v), 2) for v in self.box]
        d["score"] = round(float(self.score), 4)
        return d


class PersonDetector(Protocol):
    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]: ...


def require(package: str, install_hint: str) -> None:
    """BackendUnavailable unless ``package`` is importable (checked without importing it)."""
    if importlib.util.find_spec(package) is None:
        raise BackendUnavailable(f"python package '{package}' is not installed: {install_hint}")


class PoseEstimator(Protocol):
    """Top-down whole-body pose: per image, per person box, 133 x [x, y, score] in image pixels."""

    name: str

    def estimate(self, images: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]]) -> list[list[np.ndarray]]: ...
