"""Object Extension Ratio (VirtualModel): how far the generated product spills outside the given product mask.

    OER = sum ReLU(M - m) / sum m

m: one input product's mask (the generator was conditioned on it); M: the mask the products
stage's segmenter (``hoiforge.models.segment_service.segment``, the same code that built the
training data) finds on the generated image inside that product's box (m's box, grown). Pixels
of M outside m count; a product drawn smaller than m does not. Masks are binary or soft in
[0, 1]. OER is per product, each product's M against its own m (not on the union of an image's
products: a product spilling over another would vanish in the union); the set's value is the
mean over products whose m is not empty (an empty m has no OER and is counted apart). Tables
print it in percent.
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
    per_image: list[float] = field(repr=False)  # per entry: one product
    n: int = 0
    n_empty: int = 0  # images whose input mask is empty: no OER

    @property
    def percent(self) -> float:
        return 100.0 * self.mean


def oer_scores(generated: list[np.ndarray], given: list[np.ndarray]) -> OERResult:
    if len(generated) != len(given):
        raise ValueError(f"{len(generated)} generated masks for {len(given)} input masks")
    return oer_of([oer(M, m) for M, m in zip(generated, given, strict=True)])


def oer_of(values: list[float]) -> OERResult:
    """The set's OER from per-product values (NaN = an empty m)."""
    defined = [v for v in values if not math.isnan(v)]
    return OERResult(float(np.mean(defined)) if defined else math.nan, list(values), len(defined), len(values) - len(defined))


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
) -> list[list[np.ndarray]]:
    """M per product per generated image: the segmenter's mask for each of ``boxes`` (or each product ``prompt`` detects)."""
    from hoiforge.models.segment_service import segment

    per_image = segment(images, boxes=boxes, prompt=prompt, service=service, **backends)
    return [[np.asarray(mk, bool) for mk in masks] for masks in per_image]


def product_oer(images: list[np.ndarray], given: list[list[np.ndarray]], box_scale: float = 1.0, service=None, **backends) -> OERResult:
    """OER per product, averaged over products: ``given[i]`` are image i's product masks m (at its size), each
    segmented on its own box grown ``box_scale`` times; an empty m has no OER (counted in ``n_empty``)."""
    boxes = [[mask_box(m, box_scale) for m in masks] for masks in given]
    asked = [(i, j) for i, per in enumerate(boxes) for j, b in enumerate(per) if b is not None]
    found: dict[tuple[int, int], np.ndarray] = {}
    todo = sorted({i for i, _ in asked})
    if todo:
        masks = generated_product_masks([images[i] for i in todo], boxes=[[b for b in boxes[i] if b is not None] for i in todo],
                                        service=service, **backends)  # fmt: skip
        for i, per in zip(todo, masks, strict=True):
            for j, M in zip([j for k, j in asked if k == i], per, strict=True):
                found[(i, j)] = M
    generated = [found.get((i, j), np.zeros_like(m, bool)) for i, per in enumerate(given) for j, m in enumerate(per)]
    return oer_scores(generated, [m for per in given for m in per])
