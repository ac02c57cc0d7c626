"""Object Extension Ratio (VirtualModel): how far the generated product spills outside the given product mask.

    OER = sum ReLU(M - m) / sum m

m: the input product mask the generator was conditioned on; M: the product mask segmented on the
generated image by the products stage's segmenter (``hoiforge.models.segment_service.segment``,
the same code that built the training data). Pixels of M outside m count; a product drawn
smaller than m does not. Masks are binary or soft in [0, 1], per image the union of the image's
products. OER is per image; the set's value is the mean over images whose m is not empty (an
empty m has no OER and is counted apart). Tables print it in percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def oer(generated: np.ndarray, given: np.ndarray) -> float:
    """sum ReLU(M - m) / sum m for one image; NaN when m is empty."""
    M = np.asarray(generated, np.float64)
    m = np.asarray(given, np.float64)
    if M.shape != m.shape:
        raise ValueError(f"generated mask {M.shape} and input mask {m.shape} differ in size; resize the generated image's mask first")
    area = m.sum()
    if area <= 0:
        return math.nan
    return float(np.maximum(M - m, 0.0).sum() / area)


@dataclass
class OERResult:
    mean: float  # fraction (x100 for the tables' %)
    per_image: list[float] = field(repr=False)
    n: int = 0
    n_empty: int = 0  # images whose input mask is empty: no OER

    @property
    def percent(self) -> float:
        return 100.0 * self.mean


def oer_scores(generated: list[np.ndarray], given: list[np.ndarray]) -> OERResult:
    if len(generated) != len(given):
        raise ValueError(f"{len(generated)} generated masks for {len(given)} input masks")
    values = [oer(M, m) for M, m in zip(generated, given, strict=True)]
    defined = [v for v in values if not math.isnan(v)]
    return OERResult(float(np.mean(defined)) if defined else math.nan, values, len(defined), len(values) - len(defined))


def mask_box(mask: np.ndarray, scale: float = 1.0) -> tuple[float, float, float, float] | None:
    """The box around a mask's pixels (x0, y0, x1, y1), grown ``scale`` times about its centre; None if empty."""
    ys, xs = np.nonzero(np.asarray(mask) > 0)
    if len(xs) == 0:
        return None
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    h, w = np.asarray(mask).shape[:2]
    return max(0.0, cx - hw), max(0.0, cy - hh), min(float(w), cx + hw), min(float(h), cy + hh)


def generated_product_masks(
    images: list[np.ndarray],
    boxes: list[list[tuple[float, float, float, float]]] | None = None,
    prompt: str | None = None,
    service=None,
    **backends,
) -> list[np.ndarray]:
    """M per generated image: the union of the products the segmenter finds (for ``boxes``, or for what ``prompt`` detects)."""
    from hoiforge.models.segment_service import segment

    per_image = segment(images, boxes=boxes, prompt=prompt, service=service, **backends)
    out = []
    for rgb, masks in zip(images, per_image, strict=True):
        union = np.zeros(rgb.shape[:2], bool)
        for mk in masks:
            union |= np.asarray(mk, bool)
        out.append(union)
    return out
