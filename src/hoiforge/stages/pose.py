"""pose: COCO-WholeBody 133 keypoints for every kept person, and the rendered skeleton.

Top-down on the person stage's boxes (``ann["persons"]``): writes ``keypoints`` (133 x
[x, y, score], pixels) into each person, renders ``<id>.pose.png`` (DWPose convention plus the
feet), and reports how many points of each part are visible per person. With ``leg_json`` on
(shoe-leg recipe) it also writes ``<id>.leg.json``: ShoeModel's 12 leg+foot points per person
(datasets/leg.py).

Slot ``estimator`` (task ``pose-estimator``, models/registry.py; models.base.PoseEstimator):
``mediapipe`` (embedded holistic, offline), ``vitpose`` (transformers ViTPose with a converted
133-keypoint head, local weights), ``rtmw`` (RTMW/DWPose 133-keypoint ONNX, onnxruntime).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from hoiforge.datasets import keypoints as K
from hoiforge.datasets import leg as L
from hoiforge.datasets.images import encode_png
from hoiforge.datasets.render import DWPOSE_MIN_SCORE, render_leg, render_pose
from hoiforge.stages.base import MetricSpec, Sample, Slot, SlotConfig, Stage, StageParams, slot


class PoseParams(StageParams):
    estimator: Annotated[SlotConfig, Slot("pose-estimator")] = slot("mediapipe")
    min_score: float = Field(DWPOSE_MIN_SCORE, ge=0, le=1, description="a keypoint counts as visible (and is drawn) above this score")
    render: bool = Field(True, description="write <id>.pose.png")
    leg_json: bool = Field(
        False, description="write <id>.leg.json (the 12 shoe-leg keypoints per person) and <id>.leg.png (X_p, ShoeModel)"
    )


class Pose(Stage):
    name = "pose"
    Params = PoseParams
    reads = ("persons",)
    writes = ("keypoints", "pose.png", "leg.json", "leg.png")
    metrics = tuple(
        MetricSpec(f"kp_{part}", "score", "visible keypoints", f"{part}: visible keypoints per person", range=(0, len(idx)))
        for part, idx in K.PARTS.items()
    )
    annotations = {"persons": [{"keypoints": [[0.0]], "pose_backend": ""}]}  # per person: 133 x [x, y, score]
    default_batch_size = 8

    def provides(self) -> tuple[str, ...]:
        p = self.params
        return ("keypoints",) + (("pose.png",) if p.render else ()) + (("leg.json", "leg.png") if p.leg_json else ())

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        images = [s.rgb() for s in samples]
        estimator = self.backends["estimator"]
        found = estimator.estimate(images, [[tuple(q["box"]) for q in s.ann["persons"]] for s in samples])
        for s, rgb, found_people in zip(samples, images, found, strict=True):
            # Metrics and the rendering use the rounded keypoints of the document, so that
            # <id>.pose.png is exactly what <id>.json says.
            people = []
            for person, kp in zip(s.ann["persons"], found_people, strict=True):
                person["keypoints"] = K.to_json(kp)
                person["pose_backend"] = estimator.name
                people.append(np.array(person["keypoints"]))
            n = max(len(people), 1)
            for part, idx in K.PARTS.items():
                s.metrics[f"kp_{part}"] = round(sum(K.visible_count(kp, idx, p.min_score) for kp in people) / n, 3)
            if p.render:
                s.members["pose.png"] = encode_png(render_pose(people, *rgb.shape[:2], min_score=p.min_score))
            if p.leg_json:
                h, w = rgb.shape[:2]
                doc = L.leg_document(s.ann["persons"], w, h, p.min_score)
                s.members["leg.json"] = L.encode(doc)
                s.members["leg.png"] = encode_png(render_leg([np.array(q["leg"]) for q in doc["persons"]], h, w, min_score=p.min_score))
