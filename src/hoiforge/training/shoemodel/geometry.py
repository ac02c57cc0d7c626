"""Frames ShoeModel works in: the square shoe-pair crop (WD, LpS phase 1) and the one-size normalised frame (LpS phase 2).

Crops are affine warps (a 2x3 matrix from frame pixels to crop pixels), so a crop that reaches
past the image is padded, its points map with the same matrix, and predictions map back with its
inverse. The square box: centre of the shoe pair's bounding box, side = its longer side x
(1 + 2 x margin).

LpS phase 2 normalises a point P (pixels) with ONE size s for both axes, s = the frame's longer
side, as P / s * 0.9 + 0.1 (leg.json's formula with one size, so leg angles keep their shape on
non-square photos); a missing point is exactly 0.
"""

from __future__ import annotations

import cv2
import numpy as np

NORM_SCALE, NORM_OFFSET = 0.9, 0.1


def square_box(mask: np.ndarray, margin: float) -> tuple[float, float, float, float] | None:
    """The square box around the True pixels of ``mask`` (None when there are none)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def crop_matrix(box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """2x3 affine from frame pixels to the ``size`` x ``size`` crop of the square ``box``."""
    x0, y0, x1, _y1 = box
    scale = size / max(x1 - x0, 1e-6)
    return np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]], np.float64)


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine that applies ``inner`` first, then ``outer``."""
    a = np.vstack([outer, [0, 0, 1]])
    b = np.vstack([inner, [0, 0, 1]])
    return (a @ b)[:2]


def warp(image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int], nearest: bool = False, fill: int = 0) -> np.ndarray:
    """``image`` through ``matrix`` into a ``size`` (side, or (width, height)) canvas; outside = ``fill``."""
    w, h = (size, size) if isinstance(size, int) else size
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    channels = 1 if image.ndim == 2 else image.shape[2]
    return cv2.warpAffine(
        image, np.asarray(matrix, np.float64), (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * channels
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """N x 2 (or N x 3 with a score column, kept) points through a 2x3 affine."""
    pts = np.asarray(points, np.float64).copy()
    xy = pts[:, :2] @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]
    pts[:, :2] = xy
    return pts


def rotation_matrix(centre: tuple[float, float], degrees: float, scale: float = 1.0) -> np.ndarray:
    return cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(degrees), float(scale))


def normalise(points: np.ndarray, size: float, min_score: float) -> np.ndarray:
    """N x 3 [x, y, score] pixels -> N x 2 with ONE size: P/size*0.9+0.1 for seen points, 0 for missing."""
    pts = np.asarray(points, np.float64)
    out = np.zeros((len(pts), 2), np.float64)
    seen = pts[:, 2] > min_score
    out[seen] = pts[seen, :2] / float(size) * NORM_SCALE + NORM_OFFSET
    return out


def denormalise(normalised: np.ndarray, size: float) -> np.ndarray:
    """N x 2 back to N x 3 [x, y, seen] pixels; an all-zero row is missing (seen 0)."""
    n = np.asarray(normalised, np.float64)
    seen = (n != 0).any(axis=1)
    out = np.zeros((len(n), 3), np.float64)
    out[seen, :2] = (n[seen] - NORM_OFFSET) / NORM_SCALE * float(size)
    out[seen, 2] = 1.0
    return out
