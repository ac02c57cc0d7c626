"""The shoe-leg keypoint document (`<id>.leg.json`): ShoeModel's 12 leg+foot points per person.

ShoeModel conditions on the legs and feet only: hips, knees, ankles and the six foot points
(big toe, small toe, heel per side), taken from the 133-point whole-body pose in the order of
``keypoints.SHOE_LEG``; the 8 foot points (ankles + feet, ``keypoints.SHOE_FOOT``) are kept
separately because the shoe segmentation and the wearable-area model look at them alone.

Normalisation (as its LpS module consumes them): a seen point P becomes P/s * 0.9 + 0.1 with ONE
size s = max(width, height), the side of the square the image is padded into (LpS takes square
256 inputs). One size for both axes keeps leg angles: dividing x by the width and y by the height
would squash the legs of every non-square photo. Seen points lie in [0.1, 1.0]; 0 means
"missing" without colliding with a point on the image's top or left edge.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from hoiforge.datasets import keypoints as K

LAYOUT = "coco-wholebody/shoe-leg-12"
LEG_NAMES = tuple(K.NAMES[i] for i in K.SHOE_LEG)
FOOT_NAMES = tuple(K.NAMES[i] for i in K.SHOE_FOOT)
# Per side: the points that lie on (or in) the shoe. The ankle is the top of the shoe's
# region; the toes and heel are its ends.
SHOE_POINTS = {
    "left": tuple(K.INDEX[n] for n in ("left_ankle", "left_big_toe", "left_small_toe", "left_heel")),
    "right": tuple(K.INDEX[n] for n in ("right_ankle", "right_big_toe", "right_small_toe", "right_heel")),
}
# Foot points that only a visible foot has (the ankle alone is seen under long trousers too).
FOOT_ONLY = {side: points[1:] for side, points in SHOE_POINTS.items()}
NORM_SCALE, NORM_OFFSET = 0.9, 0.1
# The document's typed empties (datasets/schema.py); ``crop`` is added by the shoes stage.
TEMPLATE = {
    "layout": "",
    "names": [""],
    "foot_names": [""],
    "width": 0,
    "height": 0,
    "size": 0,
    "min_score": 0.0,
    "normalisation": "",
    "persons": [{"box": [0.0], "leg": [[0.0]], "foot": [[0.0]], "leg_normalised": [[0.0]], "feet_seen": [""]}],
    "crop": {"box": [0.0], "size": 0, "person": 0, "foot": [[0.0]]},
}


def norm_size(width: int, height: int) -> int:
    """The one size points are normalised by: the side of the square the image is padded into."""
    return max(width, height)


def normalise(points: np.ndarray, size: float, min_score: float) -> np.ndarray:
    """N x 2 in [0.1, 1] for points scoring above ``min_score`` (P/size*0.9+0.1), exactly 0 for missing ones."""
    pts = np.asarray(points, dtype=np.float64)
    out = np.zeros((len(pts), 2), np.float64)
    seen = pts[:, 2] > min_score
    out[seen] = pts[seen, :2] / float(size) * NORM_SCALE + NORM_OFFSET
    return out


def denormalise(normalised: np.ndarray, size: float) -> np.ndarray:
    """N x 3 [x, y, seen] pixels back from ``normalise``; missing points come back as zeros."""
    n = np.asarray(normalised, dtype=np.float64)
    seen = (n > 0).any(axis=1)
    out = np.zeros((len(n), 3), np.float64)
    out[seen, :2] = (n[seen] - NORM_OFFSET) / NORM_SCALE * float(size)
    out[seen, 2] = 1.0
    return out


def seen_sides(keypoints: np.ndarray, min_score: float) -> list[str]:
    """The sides ("left", "right") whose foot (a toe or the heel) the pose saw."""
    kp = np.asarray(keypoints)
    return [side for side, idx in FOOT_ONLY.items() if (kp[list(idx), 2] > min_score).any()]


def leg_document(persons: list[dict[str, Any]], width: int, height: int, min_score: float) -> dict[str, Any]:
    """The `<id>.leg.json` document for the pose stage's persons (each with 133 keypoints)."""
    people, size = [], norm_size(width, height)
    for person in persons:
        kp = np.asarray(person["keypoints"], dtype=np.float64)
        leg = kp[list(K.SHOE_LEG)]
        people.append(
            {
                "box": person.get("box"),
                "leg": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)] for x, y, s in leg],
                "foot": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)] for x, y, s in kp[list(K.SHOE_FOOT)]],
                "leg_normalised": [[round(float(x), 5), round(float(y), 5)] for x, y in normalise(leg, size, min_score)],
                "feet_seen": seen_sides(kp, min_score),
            }
        )
    return {
        "layout": LAYOUT,
        "names": list(LEG_NAMES),
        "foot_names": list(FOOT_NAMES),
        "width": width,
        "height": height,
        "size": size,
        "min_score": min_score,
        "normalisation": "P/size*0.9+0.1 with size = max(width, height); 0 = missing",
        "persons": people,
    }


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def leg_points_133(leg: list | np.ndarray) -> np.ndarray:
    """A 133 x 3 whole-body array holding only the 12 shoe-leg points (in ``SHOE_LEG`` order)."""
    kp = K.empty()
    kp[list(K.SHOE_LEG)] = np.asarray(leg, dtype=np.float64)
    return kp
