"""Every task protocol the stages call, with the result types its backends return.

A backend implements one protocol for one library (models/registry.py maps registry names to
them); a stage holds a backend by its protocol, never by its class.

| task | protocol | result |
|---|---|---|
| detect persons | ``PersonDetector.detect(images)`` | ``Detection`` per person |
| estimate whole-body pose | ``PoseEstimator.estimate(images, boxes)`` | 133 x [x, y, score] per box |
| detect products | ``BoxDetector.detect(images, prompt)`` | ``Product`` per box (prompt: ``prompt_phrases``) |
| segment boxes | ``BoxSegmenter.segment(images, boxes)`` | (mask, score) per box |
| read text | ``TextReader.read(images)`` | ``TextRegion`` per region |
| inpaint | ``Inpainter.inpaint(images, masks)`` | the images, only masked pixels changed |

The products stage and the eval ``segment`` service compose a BoxDetector and a BoxSegmenter
(models.segment_service), so OER on generated images runs exactly the training-data code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np


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


class PoseEstimator(Protocol):
    """Top-down whole-body pose: per image, per person box, 133 x [x, y, score] in image pixels."""

    name: str

    def estimate(self, images: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]]) -> list[list[np.ndarray]]: ...


@dataclass
class Product:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float  # detector confidence (box score)
    label: str = "product"  # the prompt phrase it matched ("product" when class-agnostic)
    phrase: str = ""  # the phrase as the detector read it (subword tokens joined)
    mask: np.ndarray | None = field(default=None, repr=False)  # HxW bool at image size
    mask_score: float | None = None  # segmenter confidence (SAM's predicted IoU)
    source: str = ""


class BoxDetector(Protocol):
    def detect(self, images: list[np.ndarray], prompt: str) -> list[list[Product]]: ...


class BoxSegmenter(Protocol):
    def segment(
        self,
        images: list[np.ndarray],
        boxes: list[list[tuple[float, float, float, float]]],
    ) -> list[list[tuple[np.ndarray, float]]]:
        """Per image, per box: (HxW bool mask, score)."""
        ...


def prompt_phrases(prompt: str) -> list[str]:
    """The phrases of a GroundingDINO prompt: comma- or period-separated, lower case, no blanks."""
    parts = [p.strip().lower() for chunk in prompt.split(".") for p in chunk.split(",")]
    return [p for p in parts if p]


@dataclass
class TextRegion:
    polygon: list[tuple[float, float]]  # detector quadrilateral (4+ points), x, y in pixels
    text: str
    score: float  # recognition confidence of ``text``
    det_score: float | None = None  # detection confidence of the box (None: the backend gives none)

    @property
    def box(self) -> tuple[float, float, float, float]:
        xs, ys = zip(*self.polygon)
        return min(xs), min(ys), max(xs), max(ys)

    def to_json(self) -> dict:
        return {
            "polygon": [[round(float(x), 1), round(float(y), 1)] for x, y in self.polygon],
            "box": [round(float(v), 1) for v in self.box],
            "text": self.text,
            "score": round(float(self.score), 4),
            "det_score": None if self.det_score is None else round(float(self.det_score), 4),
        }


class TextReader(Protocol):
    name: str

    def read(self, images: list[np.ndarray]) -> list[list[TextRegion]]: ...


class Inpainter(Protocol):
    name: str

    def inpaint(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]: ...
