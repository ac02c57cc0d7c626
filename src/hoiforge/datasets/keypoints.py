"""The COCO-WholeBody 133-keypoint layout: names, parts, OKS sigmas, skeleton, named subsets.

Every pose backend writes keypoints in this order (133 x [x, y, score], pixels); the renderer,
the ShoeModel leg subset and the pose metrics (OKS with these sigmas in pycocotools) read it.
Source: the COCO-WholeBody dataset definition (jin-s13/COCO-WholeBody, as in mmpose's
``configs/_base_/datasets/coco_wholebody.py``).
"""

from __future__ import annotations

import numpy as np

NUM_KEYPOINTS = 133

BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
FOOT_NAMES = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
FACE_NAMES = tuple(f"face-{i}" for i in range(68))  # the 68 iBUG/dlib face points
_FINGER_POINTS = (
    "root",
    *tuple(f"{finger}{j}" for finger in ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger") for j in range(1, 5)),
)
LEFT_HAND_NAMES = tuple(f"left_hand_{p}" if p == "root" else f"left_{p}" for p in _FINGER_POINTS)
RIGHT_HAND_NAMES = tuple(f"right_hand_{p}" if p == "root" else f"right_{p}" for p in _FINGER_POINTS)
NAMES = BODY_NAMES + FOOT_NAMES + FACE_NAMES + LEFT_HAND_NAMES + RIGHT_HAND_NAMES
INDEX = {name: i for i, name in enumerate(NAMES)}

# Index ranges of the parts.
BODY = tuple(range(0, 17))
FEET = tuple(range(17, 23))
FACE = tuple(range(23, 91))
LEFT_HAND = tuple(range(91, 112))
RIGHT_HAND = tuple(range(112, 133))
HANDS = LEFT_HAND + RIGHT_HAND
PARTS = {"body": BODY, "feet": FEET, "face": FACE, "hands": HANDS}

# ShoeModel: hips, knees, ankles + the 6 foot points (12), and ankles + foot points (8).
SHOE_LEG = tuple(INDEX[n] for n in ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")) + FEET
SHOE_FOOT = (INDEX["left_ankle"], INDEX["right_ankle"], *FEET)
SUBSETS = {"body": BODY, "feet": FEET, "face": FACE, "left_hand": LEFT_HAND, "right_hand": RIGHT_HAND,
           "hands": HANDS, "shoe_leg": SHOE_LEG, "shoe_foot": SHOE_FOOT}  # fmt: skip

# Official per-keypoint OKS sigmas (COCO-WholeBody evaluation, myeval_wholebody.py).
_BODY_SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089]
_FOOT_SIGMAS = [0.068, 0.066, 0.066, 0.092, 0.094, 0.094]
_FACE_SIGMAS = [
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043, 0.041, 0.045,
    0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008,
    0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010, 0.034, 0.008, 0.008, 0.009,
    0.008, 0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.010, 0.008,
]  # fmt: skip
_HAND_SIGMAS = [
    0.029,
    0.022,
    0.035,
    0.037,
    0.047,
    0.026,
    0.025,
    0.024,
    0.035,
    0.018,
    0.024,
    0.022,
    0.026,
    0.017,
    0.021,
    0.021,
    0.032,
    0.020,
    0.019,
    0.022,
    0.031,
]
SIGMAS = np.array(_BODY_SIGMAS + _FOOT_SIGMAS + _FACE_SIGMAS + _HAND_SIGMAS + _HAND_SIGMAS, dtype=np.float64)

# Left/right mirror pairs (flip augmentation, flip test): body, feet, hands; face by its own table.
_FACE_FLIP = {**{i: 16 - i for i in range(17)}, **{17 + i: 26 - i for i in range(10)},
              **{31: 35, 32: 34, 36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46, 48: 54, 49: 53, 50: 52,
                 55: 59, 56: 58, 60: 64, 61: 63, 65: 67}}  # fmt: skip


def _flip_index() -> tuple[int, ...]:
    flip = list(range(NUM_KEYPOINTS))
    for i, name in enumerate(NAMES):
        if name.startswith("left_"):
            flip[i] = INDEX["right_" + name[5:]]
        elif name.startswith("right_"):
            flip[i] = INDEX["left_" + name[6:]]
    for a, b in _FACE_FLIP.items():
        flip[23 + a], flip[23 + b] = 23 + b, 23 + a
    return tuple(flip)


FLIP_INDEX = _flip_index()


def _links(pairs: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    return tuple((INDEX[a], INDEX[b]) for a, b in pairs)


BODY_SKELETON = _links([
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
    ("left_hip", "right_hip"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"), ("left_eye", "right_eye"), ("nose", "left_eye"),
    ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"), ("left_ear", "left_shoulder"),
    ("right_ear", "right_shoulder"),
])  # fmt: skip
FOOT_SKELETON = _links([
    ("left_ankle", "left_big_toe"), ("left_ankle", "left_small_toe"), ("left_ankle", "left_heel"),
    ("right_ankle", "right_big_toe"), ("right_ankle", "right_small_toe"), ("right_ankle", "right_heel"),
])  # fmt: skip
# Hand: root (wrist) to each finger's 4 joints, in the 21-point order shared by OpenPose and mediapipe.
HAND_EDGES = tuple((0 if j == 1 else 4 * f + j - 1, 4 * f + j) for f in range(5) for j in range(1, 5))
SKELETON = (
    BODY_SKELETON
    + FOOT_SKELETON
    + tuple((LEFT_HAND[a], LEFT_HAND[b]) for a, b in HAND_EDGES)
    + tuple((RIGHT_HAND[a], RIGHT_HAND[b]) for a, b in HAND_EDGES)
)


def empty() -> np.ndarray:
    """133 x 3 keypoints that nothing saw: zeros, score 0."""
    return np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)


def visible_count(keypoints: np.ndarray, indices: tuple[int, ...], min_score: float) -> int:
    """How many of ``indices`` score above ``min_score`` (strictly, as DWPose decides what to draw)."""
    return int((np.asarray(keypoints)[list(indices), 2] > min_score).sum())


def to_json(keypoints: np.ndarray) -> list[list[float]]:
    """133 x [x, y, score] rounded for the annotation document."""
    kp = np.asarray(keypoints, dtype=np.float64)
    assert kp.shape == (NUM_KEYPOINTS, 3), kp.shape
    return [[round(float(x), 2), round(float(y), 2), round(float(s), 4)] for x, y, s in kp]
