"""pose: COCO-WholeBody 133 keypoints for every kept person, and the rendered skeleton.

Top-down on the person stage's boxes (``ann["persons"]``): writes ``keypoints`` (133 x
[x, y, score], pixels) into each person, renders ``<id>.pose.png`` (DWPose convention plus the
feet), and reports how many points of each part are visible per person. With ``leg_json`` on
(shoe-leg recipe) it also writes ``<id>.leg.json``: ShoeModel's 12 leg+foot points per person
(datasets/leg.py).

Backends (POSE_BACKENDS, "module:Class" implementing models.base.PoseEstimator):
``mediapipe`` (embedded holistic, offline), ``vitpose`` (transformers ViTPose with a converted
133-keypoint head, local weights), ``rtmw`` (RTMW/DWPose 133-keypoint ONNX, onnxruntime).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from hoiforge.datasets import keypoints as K
from hoiforge.datasets import leg as L
from hoiforge.datasets.images import encode_png
from hoiforge.datasets.render import DWPOSE_MIN_SCORE, render_pose
from hoiforge.stages.base import BackendStage, Sample, StageParams

POSE_BACKENDS: dict[str, str] = {
    "mediapipe": "hoiforge.models.mediapipe_pose:MediapipeHolisticPose",
    "vitpose": "hoiforge.models.vitpose:VitPoseWholeBody",
    "rtmw": "hoiforge.models.rtmw_onnx:RTMWOnnxPose",
}


class PoseParams(StageParams):
    backend: str = "mediapipe"
    min_score: float = Field(DWPOSE_MIN_SCORE, ge=0, le=1, description="a keypoint counts as visible (and is drawn) above this score")
    render: bool = Field(True, description="write <id>.pose.png")
    leg_json: bool = Field(False, description="write <id>.leg.json: the 12 shoe-leg keypoints per person (ShoeModel)")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the backend")


class Pose(BackendStage):
    name = "pose"
    Params = PoseParams
    members = ("pose.png", "leg.json")
    backends = POSE_BACKENDS
    default_batch_size = 8

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        for s in samples:
            if "persons" not in s.ann:
                raise ValueError("pose needs person boxes: put the person stage before pose in the recipe")
        images = [s.rgb() for s in samples]
        found = self.model.estimate(images, [[tuple(q["box"]) for q in s.ann["persons"]] for s in samples])
        for s, rgb, found_people in zip(samples, images, found, strict=True):
            # Metrics and the rendering use the rounded keypoints of the document, so that
            # <id>.pose.png is exactly what <id>.json says.
            people = []
            for person, kp in zip(s.ann["persons"], found_people, strict=True):
                person["keypoints"] = K.to_json(kp)
                person["pose_backend"] = self.model.name
                people.append(np.array(person["keypoints"]))
            n = max(len(people), 1)
            for part, idx in K.PARTS.items():
                s.metrics[f"kp_{part}"] = round(sum(K.visible_count(kp, idx, p.min_score) for kp in people) / n, 3)
            if p.render:
                s.members["pose.png"] = encode_png(render_pose(people, *rgb.shape[:2], min_score=p.min_score))
            if p.leg_json:
                h, w = rgb.shape[:2]
                s.members["leg.json"] = L.encode(L.leg_document(s.ann["persons"], w, h, p.min_score))
