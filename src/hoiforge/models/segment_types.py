"""Types shared by the product detectors and segmenters (detect boxes, then segment each box).

A detector turns images (+ a text prompt) into boxes; a segmenter turns images + boxes into
binary masks. The products stage and the eval ``segment`` service compose the two
(models.segment_service), so OER on generated images runs exactly the training-data code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


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
