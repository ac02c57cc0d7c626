"""Whole-body skeleton rendering in the OpenPose/DWPose convention ControlNet users know.

What DWPose's ``draw_pose`` does (controlnet_aux / DWPose ``util.py``), plus the feet:

- body: the 133 layout's 17 body points become OpenPose's 18 (a neck at the shoulders' middle);
  17 limbs as filled ellipses (stick width 4) in the 18-colour palette, the whole canvas is then
  dimmed to 60 %, and the 18 joints are drawn on top as radius-4 dots;
- feet (DWPose extracts them but never draws them): ankle -> big toe / small toe / heel as
  ellipses of the same width, then radius-4 dots; colours continue the palette's hue wheel;
- hands: 20 bones as 2-px lines coloured along the HSV hue wheel, joints as radius-4 blue dots;
- face: 68 white radius-3 dots.

A point is drawn when its score exceeds ``min_score`` (DWPose: 0.3) and it lies in the image;
a limb when both ends are. Black background, RGB, image size: ``<id>.pose.png``.
Deterministic: integer OpenCV rasterisation only.
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

from hoiforge.datasets import keypoints as K

# OpenPose's 18 points from the 133 layout; -1 = the neck (mean of both shoulders).
OPENPOSE_FROM_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
# OpenPose limbs (1-based as in the original code); the last two (ear-shoulder) are not drawn.
LIMB_SEQ = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13),
            (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))  # fmt: skip
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
# Feet: left big toe, small toe, heel, right big toe, small toe, heel (hues between the palette's).
FOOT_COLORS = ((255, 42, 0), (255, 128, 0), (255, 212, 0), (0, 128, 255), (0, 42, 255), (42, 0, 255))
STICK_WIDTH = 4
HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)
DWPOSE_MIN_SCORE = 0.3


def _hand_edge_colors() -> tuple[tuple[int, int, int], ...]:
    n = len(K.HAND_EDGES)
    # Rounded half up, as OpenCV rounds the float colours DWPose passes to cv2.line.
    return tuple(tuple(int(c * 255 + 0.5) for c in colorsys.hsv_to_rgb(i / n, 1.0, 1.0)) for i in range(n))


HAND_EDGE_COLORS = _hand_edge_colors()


def openpose18(kp: np.ndarray) -> np.ndarray:
    """18 x 3 OpenPose body points from 133 x 3; the neck scores the weaker shoulder."""
    out = np.zeros((18, 3), dtype=np.float64)
    for i, j in enumerate(OPENPOSE_FROM_COCO):
        if j >= 0:
            out[i] = kp[j]
    ls, rs = kp[K.INDEX["left_shoulder"]], kp[K.INDEX["right_shoulder"]]
    out[1] = ((ls[0] + rs[0]) / 2, (ls[1] + rs[1]) / 2, min(ls[2], rs[2]))
    return out


# Limbs are dimmed to 60% (truncated) before the joints are drawn; one lookup table does it.
_DIM = (np.arange(256) * 0.6).astype(np.uint8)


def _stick(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, color: tuple[int, int, int]) -> None:
    # The OpenPose limb: an ellipse along the bone, half-length x stick width.
    (x0, y0), (x1, y1) = a[:2], b[:2]
    length = math.hypot(x0 - x1, y0 - y1)
    angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
    center = (int((x0 + x1) / 2), int((y0 + y1) / 2))
    polygon = cv2.ellipse2Poly(center, (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, polygon, color)


def render_pose(persons: list[np.ndarray], height: int, width: int, min_score: float = DWPOSE_MIN_SCORE) -> np.ndarray:
    """HxWx3 uint8 RGB skeleton image of every person's 133 x [x, y, score] keypoints."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    kps = [np.asarray(p, dtype=np.float64).reshape(K.NUM_KEYPOINTS, 3) for p in persons]

    def seen(p: np.ndarray) -> bool:
        return p[2] > min_score and 0 <= p[0] < width and 0 <= p[1] < height

    def dot(p: np.ndarray, radius: int, color: tuple[int, int, int]) -> None:
        cv2.circle(canvas, (int(p[0]), int(p[1])), radius, color, thickness=-1)

    # Body and feet limbs first, dimmed together, then their joints on top (DWPose's order).
    bodies = [openpose18(kp) for kp in kps]
    for (a, b), color in zip(LIMB_SEQ, BODY_COLORS, strict=False):
        for body in bodies:
            if seen(body[a - 1]) and seen(body[b - 1]):
                _stick(canvas, body[a - 1], body[b - 1], color)
    for (a, b), color in zip(K.FOOT_SKELETON, FOOT_COLORS, strict=True):
        for kp in kps:
            if seen(kp[a]) and seen(kp[b]):
                _stick(canvas, kp[a], kp[b], color)
    cv2.LUT(canvas, _DIM, dst=canvas)  # = (canvas * 0.6).astype(uint8), without a float64 copy of the canvas
    for body in bodies:
        for p, color in zip(body, BODY_COLORS, strict=True):
            if seen(p):
                dot(p, 4, color)
    for kp in kps:
        for i, color in zip(K.FEET, FOOT_COLORS, strict=True):
            if seen(kp[i]):
                dot(kp[i], 4, color)

    for kp in kps:
        for hand in (K.LEFT_HAND, K.RIGHT_HAND):
            pts = kp[list(hand)]
            for (a, b), color in zip(K.HAND_EDGES, HAND_EDGE_COLORS, strict=True):
                if seen(pts[a]) and seen(pts[b]):
                    cv2.line(canvas, (int(pts[a][0]), int(pts[a][1])), (int(pts[b][0]), int(pts[b][1])), color, thickness=2)
            for p in pts:
                if seen(p):
                    dot(p, 4, HAND_POINT_COLOR)
        for i in K.FACE:
            if seen(kp[i]):
                dot(kp[i], 3, FACE_POINT_COLOR)
    return canvas


def render_leg(people: list[np.ndarray], height: int, width: int, min_score: float = DWPOSE_MIN_SCORE) -> np.ndarray:
    """ShoeModel's leg-pose image X_p: only the 12 leg+foot points (12 x 3 each, ``SHOE_LEG`` order),
    drawn exactly as ``render_pose`` draws them (hip-knee-ankle sticks, the feet), nothing else."""
    from hoiforge.datasets.leg import leg_points_133

    return render_pose([leg_points_133(p) for p in people], height, width, min_score=min_score)
