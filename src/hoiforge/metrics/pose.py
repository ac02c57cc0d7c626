"""Whole-body pose AP/AR of generated images: COCO keypoint OKS over the 133 COCO-WholeBody points.

Ground truth: the keypoints the generator was conditioned on (a test sample's ``persons``:
box + 133 x [x, y, score]); a point counts as labelled (v = 2) where the condition shows it, i.e.
score > 0.3 and inside the image, the rule the pose condition is rendered with (DWPose's).
Predictions: a pose backend (any ``PoseEstimator``: ``estimate(images, boxes)``) run on the
generated images, top-down on the condition's person boxes; a person's score is the mean of its
keypoint scores above 0, and a person the backend saw nothing of is no detection.

Evaluation: pycocotools' ``COCOeval`` with ``iouType="keypoints"`` and ``kpt_oks_sigmas`` set to
the 133 COCO-WholeBody sigmas (``hoiforge.datasets.keypoints.SIGMAS``), once per part as the
COCO-WholeBody evaluation does: body (17), foot (6), face (68), hands (42), wholebody (133),
each with its own sigmas; a person without labelled points in a part is ignored for that part.
The object scale is the person box area (the condition has no segmentation; COCO uses the mask
area, about half a box, so box area makes OKS somewhat more lenient). AP is the mean over OKS
thresholds .50:.05:.95, AR at 20 detections per image; both in percent (the papers' scale).
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass

import numpy as np

from hoiforge.datasets import keypoints as K
from hoiforge.datasets.render import DWPOSE_MIN_SCORE

EVAL_PARTS: dict[str, tuple[int, ...]] = {
    "body": K.BODY,
    "foot": K.FEET,
    "face": K.FACE,
    "hands": K.HANDS,
    "wholebody": tuple(range(K.NUM_KEYPOINTS)),
}


@dataclass
class PersonPose:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 pixels
    keypoints: np.ndarray  # 133 x [x, y, score]


def labelled(keypoints: np.ndarray, width: int, height: int, min_score: float = DWPOSE_MIN_SCORE) -> np.ndarray:
    """Which ground-truth points the condition shows: score above ``min_score`` and inside the image."""
    kp = np.asarray(keypoints, np.float64)
    return (kp[:, 2] > min_score) & (kp[:, 0] >= 0) & (kp[:, 0] < width) & (kp[:, 1] >= 0) & (kp[:, 1] < height)


def estimate_poses(images: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]], backend) -> list[list[PersonPose]]:
    """Predictions of ``backend`` (a PoseEstimator) on ``images`` for the given person boxes."""
    found = backend.estimate(images, boxes)
    return [
        [PersonPose(tuple(float(v) for v in box), np.asarray(kp, np.float64)) for box, kp in zip(per_boxes, per_kps, strict=True)]
        for per_boxes, per_kps in zip(boxes, found, strict=True)
    ]


def _coco_stats(images: list[dict], gt_anns: list[dict], dt_anns: list[dict], sigmas: np.ndarray) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    categories = [{"id": 1, "name": "person", "supercategory": "person"}]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress; --json owns stdout
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        gt.createIndex()
        if dt_anns:
            dt = gt.loadRes(dt_anns)
        else:
            dt = COCO()
            dt.dataset = {"images": images, "annotations": [], "categories": categories}
            dt.createIndex()
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, np.float64)


def _percent(v: float) -> float:
    return float(100.0 * v) if v >= 0 else math.nan  # pycocotools' -1 = nothing to evaluate


def pose_ap(
    ground_truth: list[list[PersonPose]],
    predictions: list[list[PersonPose]],
    image_sizes: list[tuple[int, int]],
    min_score: float = DWPOSE_MIN_SCORE,
    parts: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, dict[str, float]]:
    """``{part: {"AP", "AP50", "AP75", "AR", "persons"}}`` (percent); per image: GT persons, predicted persons, (height, width)."""
    if not (len(ground_truth) == len(predictions) == len(image_sizes)):
        raise ValueError(f"{len(ground_truth)} ground truths, {len(predictions)} predictions, {len(image_sizes)} image sizes")
    images = [{"id": i + 1, "height": int(h), "width": int(w)} for i, (h, w) in enumerate(image_sizes)]
    results = {}
    for part, idx in (parts or EVAL_PARTS).items():
        idx_list = list(idx)
        gt_anns, dt_anns = [], []
        for i, (people, (h, w)) in enumerate(zip(ground_truth, image_sizes, strict=True)):
            for person in people:
                kp = np.asarray(person.keypoints, np.float64)
                vis = labelled(kp, w, h, min_score)[idx_list]
                flat = np.zeros((len(idx_list), 3))
                flat[vis, :2] = kp[idx_list][vis, :2]
                flat[vis, 2] = 2
                x0, y0, x1, y1 = person.box
                gt_anns.append(
                    {
                        "id": len(gt_anns) + 1,
                        "image_id": i + 1,
                        "category_id": 1,
                        "iscrowd": 0,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": max(float((x1 - x0) * (y1 - y0)), 1.0),
                        "keypoints": flat.ravel().tolist(),
                        "num_keypoints": int(vis.sum()),
                    }
                )
        for i, people in enumerate(predictions):
            for person in people:
                kp = np.asarray(person.keypoints, np.float64)
                seen = kp[:, 2] > 0
                if not seen.any():
                    continue
                dt_anns.append(
                    {
                        "image_id": i + 1,
                        "category_id": 1,
                        "keypoints": kp[idx_list].ravel().tolist(),
                        "score": float(kp[seen, 2].mean()),
                    }
                )
        stats = _coco_stats(images, gt_anns, dt_anns, K.SIGMAS[idx_list])
        results[part] = {
            "AP": _percent(stats[0]),
            "AP50": _percent(stats[1]),
            "AP75": _percent(stats[2]),
            "AR": _percent(stats[5]),
            "persons": sum(a["num_keypoints"] > 0 for a in gt_anns),
        }
    return results
