"""MSRA keypoint heatmaps (LpS phase 1): Gaussian targets, target-weighted MSE, decoding with sub-pixel refinement.

As mmpose's ``MSRAHeatmap`` codec: a point at input pixel p sits at heatmap pixel
p x heatmap_size / input_size; its target is a Gaussian (sigma 2 at 64x64) centred on that
exact sub-pixel position (the unbiased form, over the whole map). A point that is unseen, or whose
Gaussian's 3-sigma disc falls wholly outside the heatmap, gets target weight 0 and does not count in the loss.

Decoding: the argmax of each heatmap, then a sub-pixel offset:

- ``quarter``: a quarter pixel towards the higher neighbour on each axis (the classic MSRA/
  SimpleBaseline step; error up to a quarter heatmap pixel);
- ``dark`` (default): DARK's Taylor step (Zhang et al., CVPR 2020; mmpose ``refine_keypoints_dark``)
  on the log of the heatmap after a Gaussian blur (zero padded, rescaled to the original peak);
  exact for a Gaussian whose peak lies 5+ heatmap pixels inside the map, the decoder paired with
  unbiased targets. Within 2 pixels of the edge it falls back to the quarter step.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Refine = Literal["dark", "quarter", "none"]


def encode(
    keypoints: np.ndarray, input_size: int, heatmap_size: int, sigma: float, min_score: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(K x H x W float32 heatmaps, K float32 target weights) of K x 3 [x, y, score] input-pixel points."""
    kp = np.asarray(keypoints, np.float64)
    k, h = len(kp), heatmap_size
    heatmaps = np.zeros((k, h, h), np.float32)
    weights = np.zeros(k, np.float32)
    stride = input_size / heatmap_size
    radius = 3 * sigma
    grid = np.arange(h, dtype=np.float64)
    for i, (x, y, score) in enumerate(kp):
        if score <= min_score:
            continue
        mx, my = x / stride, y / stride
        if mx + radius < 0 or my + radius < 0 or mx - radius > h - 1 or my - radius > h - 1:
            continue
        gx = np.exp(-((grid - mx) ** 2) / (2 * sigma**2))
        gy = np.exp(-((grid - my) ** 2) / (2 * sigma**2))
        heatmaps[i] = np.outer(gy, gx)
        weights[i] = 1.0
    return heatmaps, weights


def weighted_mse(pred, target, weights):
    """mmpose ``KeypointMSELoss(use_target_weight=True)``: mean over pixels of (w*(pred - target))^2, then over points.

    Torch tensors: pred/target B x K x H x W, weights B x K.
    """
    w = weights[..., None, None]
    return ((pred * w - target * w) ** 2).mean()


def decode(heatmaps: np.ndarray, input_size: int, refine: Refine = "dark", blur_kernel: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """(K x 2 input-pixel coordinates, K peak values) of K x H x W heatmaps."""
    hm = np.asarray(heatmaps, np.float32)
    k, _h, w = hm.shape
    flat = hm.reshape(k, -1)
    idx = flat.argmax(1)
    scores = flat[np.arange(k), idx]
    xy = np.stack([idx % w, idx // w], 1).astype(np.float64)
    if refine == "quarter":
        xy += _quarter_offsets(hm, xy.astype(int))
    elif refine == "dark":
        xy += _dark_offsets(hm, xy.astype(int), blur_kernel)
    return xy * (input_size / w), scores.astype(np.float32)


def _quarter_offsets(hm: np.ndarray, xy: np.ndarray) -> np.ndarray:
    k, h, w = hm.shape
    out = np.zeros((k, 2))
    for i, (x, y) in enumerate(xy):
        if 0 < x < w - 1:
            out[i, 0] = 0.25 * np.sign(hm[i, y, x + 1] - hm[i, y, x - 1])
        if 0 < y < h - 1:
            out[i, 1] = 0.25 * np.sign(hm[i, y + 1, x] - hm[i, y - 1, x])
    return out


def _dark_offsets(hm: np.ndarray, xy: np.ndarray, kernel: int) -> np.ndarray:
    k, h, w = hm.shape
    border = (kernel - 1) // 2
    out = np.zeros((k, 2))
    for i, (x, y) in enumerate(xy):
        if not (1 < x < w - 2 and 1 < y < h - 2):
            out[i] = _quarter_offsets(hm[i : i + 1], xy[i : i + 1])[0]  # too near the edge for the Taylor step
            continue
        peak = float(hm[i].max())
        if peak <= 0:
            continue
        if kernel > 1:
            padded = cv2.copyMakeBorder(hm[i], border, border, border, border, cv2.BORDER_CONSTANT, value=0)
            blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border : border + h, border : border + w]
            blurred *= peak / max(float(blurred.max()), 1e-12)
        else:
            blurred = hm[i]
        lg = np.log(np.maximum(blurred, 1e-10))
        dx = 0.5 * (lg[y, x + 1] - lg[y, x - 1])
        dy = 0.5 * (lg[y + 1, x] - lg[y - 1, x])
        dxx = 0.25 * (lg[y, x + 2] - 2 * lg[y, x] + lg[y, x - 2])
        dyy = 0.25 * (lg[y + 2, x] - 2 * lg[y, x] + lg[y - 2, x])
        dxy = 0.25 * (lg[y + 1, x + 1] - lg[y - 1, x + 1] - lg[y + 1, x - 1] + lg[y - 1, x - 1])
        hessian = np.array([[dxx, dxy], [dxy, dyy]])
        if abs(np.linalg.det(hessian)) < 1e-12:
            continue
        offset = -np.linalg.solve(hessian, np.array([dx, dy]))
        if np.all(np.abs(offset) < 1.5):  # a flat or multi-peak map: keep the argmax
            out[i] = offset
    return out
