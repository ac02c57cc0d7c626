"""Training augmentations of the ShoeModel modules (numpy/OpenCV, one ``np.random.Generator`` per stream).

WD (mmsegmentation's pipeline for SegFormer, on the shoe crop composited on black):
random mosaic of 4 crops (p 0.8), random rescale then crop/pad back to the input size,
rotation (p 0.5, +-15 deg), photometric distortion (brightness, contrast, saturation, hue) on the
shoe pixels only, so the background stays the black the segmenter sees at inference.

LpS phase 1 (mmpose's top-down pipeline without a person box): one affine per sample that
rotates, rescales (zoom out = pad, zoom in = crop) and shifts the shoe crop, plus a horizontal
flip that swaps left and right foot points.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import cv2
import numpy as np

from hoiforge.training.shoemodel import geometry as G

# The 8 foot points (left_ankle, right_ankle, l big toe, l small toe, l heel, r big toe, r small toe, r heel) mirrored.
FOOT_FLIP = (1, 0, 5, 6, 7, 2, 3, 4)


# -- WD ----------------------------------------------------------------------------------------
def mosaic(items: list[tuple[np.ndarray, np.ndarray, np.ndarray]], rng: np.random.Generator, size: int):
    """Four (rgb, labels, alpha) squares of side ``size`` into one: quadrants meet at a random centre."""
    cx, cy = (int(v) for v in rng.uniform(0.25 * size, 0.75 * size, 2))
    rgb = np.zeros((size, size, 3), np.uint8)
    labels = np.zeros((size, size), np.uint8)
    alpha = np.zeros((size, size), np.uint8)
    quadrants = ((0, 0, cx, cy), (cx, 0, size, cy), (0, cy, cx, size), (cx, cy, size, size))
    for (x0, y0, x1, y1), (im, lb, al) in zip(quadrants, items, strict=True):
        qw, qh = x1 - x0, y1 - y0
        if qw < 1 or qh < 1:
            continue
        side = max(qw, qh)
        im = cv2.resize(im, (side, side), interpolation=cv2.INTER_LINEAR)
        lb = cv2.resize(lb, (side, side), interpolation=cv2.INTER_NEAREST)
        al = cv2.resize(al, (side, side), interpolation=cv2.INTER_NEAREST)
        # The part of each square that touches the centre (as YOLOX/mmseg place mosaic tiles).
        sx = side - qw if x0 == 0 else 0
        sy = side - qh if y0 == 0 else 0
        rgb[y0:y1, x0:x1] = im[sy : sy + qh, sx : sx + qw]
        labels[y0:y1, x0:x1] = lb[sy : sy + qh, sx : sx + qw]
        alpha[y0:y1, x0:x1] = al[sy : sy + qh, sx : sx + qw]
    return rgb, labels, alpha


def with_mosaic(items: Iterable[Any], rng: np.random.Generator, p: float, size: int, pool: int = 16) -> Iterator[Any]:
    """(rgb, labels, alpha) items, each replaced with probability ``p`` by a mosaic with 3 recent ones."""
    recent: deque = deque(maxlen=pool)
    for item in items:
        recent.append(item)
        if p > 0 and rng.random() < p:
            others = [recent[int(i)] for i in rng.integers(0, len(recent), 3)]
            yield mosaic([item, *others], rng, size)
        else:
            yield item


def rescale_crop(rgb, labels, alpha, rng: np.random.Generator, size: int, scale_range: tuple[float, float]):
    """Random rescale by a factor in ``scale_range``, then a random ``size`` crop (or a centred pad with black)."""
    f = float(rng.uniform(*scale_range))
    side = max(1, int(round(size * f)))
    # Shift so the crop window (zoom in) or the image (zoom out) lands at a random position.
    off = float(rng.uniform(0, abs(side - size))), float(rng.uniform(0, abs(side - size)))
    sign = -1.0 if side > size else 1.0
    m = np.array([[f, 0, sign * off[0]], [0, f, sign * off[1]]], np.float64)
    return G.warp(rgb, m, size), G.warp(labels, m, size, nearest=True), G.warp(alpha, m, size, nearest=True)


def rotate(rgb, labels, alpha, rng: np.random.Generator, degrees: float):
    size = rgb.shape[1], rgb.shape[0]
    m = G.rotation_matrix((size[0] / 2, size[1] / 2), float(rng.uniform(-degrees, degrees)))
    return G.warp(rgb, m, size), G.warp(labels, m, size, nearest=True), G.warp(alpha, m, size, nearest=True)


def photometric(rgb: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmseg's PhotoMetricDistortion (brightness +-32, contrast/saturation 0.5-1.5, hue +-18), each with p 0.5, on the shoe only."""
    img = rgb.astype(np.float32)
    if rng.random() < 0.5:
        img += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        img *= rng.uniform(0.5, 1.5)
    img = np.clip(img, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    if rng.random() < 0.5:
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255)
    if rng.random() < 0.5:
        hsv[..., 0] = (hsv[..., 0] + rng.integers(-18, 19) / 2) % 180  # OpenCV hue is 0-179 (degrees / 2)
    img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if not contrast_first and rng.random() < 0.5:
        img *= rng.uniform(0.5, 1.5)
    out = np.clip(img, 0, 255).astype(np.uint8)
    shoe = alpha > 0
    result = rgb.copy()
    result[shoe] = out[shoe]
    return result


# -- LpS phase 1 -------------------------------------------------------------------------------
def keypoint_affine(
    rng: np.random.Generator,
    size: int,
    rotate_deg: float,
    rotate_p: float,
    scale_range: tuple[float, float],
    shift: float,
) -> np.ndarray:
    """A 2x3 affine of the crop about its centre: rotation (with p), rescale, shift."""
    angle = float(rng.uniform(-rotate_deg, rotate_deg)) if rng.random() < rotate_p else 0.0
    scale = float(rng.uniform(*scale_range))
    m = G.rotation_matrix((size / 2, size / 2), angle, scale)
    m[:, 2] += rng.uniform(-shift, shift, 2) * size
    return m


def flip_horizontal(rgb: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the crop and its 8 foot points, swapping left and right."""
    w = rgb.shape[1]
    pts = np.asarray(points, np.float64).copy()
    pts[:, 0] = w - 1 - pts[:, 0]
    return np.ascontiguousarray(rgb[:, ::-1]), pts[list(FOOT_FLIP)]
