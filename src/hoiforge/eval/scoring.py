"""Score a folder of generated images against a test split's conditions: the body of ``eval virtualmodel`` / ``eval shoemodel``.

Generation belongs to the trainers; everything after it is here, as functions:

1. ``iter_split_samples(out, "test")`` reads a build's test shards; ``virtualmodel_condition`` turns
   a sample into what the generator was conditioned on (caption, persons with their 133
   keypoints, product mask m); ``write_split_images`` exports the real test images (the FID
   real set, cached by content on the first evaluation).
2. The generator writes one image per condition into a folder, named ``condition.file``
   (``<id>.png``), at any size: conditions are rescaled to each generated image.
3. ``score_virtualmodel`` gives Table 1's numbers (FID, KID, CLIP, whole-body AP/AR with the
   part breakdown, OER); ``score_shoemodel`` Table 3's (FID, KID, CLIP); ``wd_row`` Table 5's
   from a confusion matrix. ``*_row`` wrap them with the generation settings into ``ResultRow``s
   for ``tables.write_table``.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hoiforge.datasets.contract import split_member_name
from hoiforge.datasets.masks import decode_mask
from hoiforge.errors import EvalError
from hoiforge.eval.tables import GenerationSettings, ResultRow
from hoiforge.metrics.image_folder import decode_image
from hoiforge.metrics.image_metrics import ImageMetrics, image_metrics
from hoiforge.metrics.oer import oer_of, product_oer
from hoiforge.metrics.pose import PersonPose, estimate_poses, pose_ap
from hoiforge.metrics.segmentation import segmentation_scores

Box = tuple[float, float, float, float]


# -- the test split as data ----------------------------------------------------------------------
def iter_split_samples(out: str | Path, split: str = "test", limit: int | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(sample id, {extension: bytes}) of every sample in a build's ``<split>-*.tar`` shards, in shard order."""
    shards = sorted((Path(out) / "shards").glob(f"{split}-*.tar"))
    if not shards:
        raise EvalError(f"{out}: no {split} shards under shards/ (was the build made with a test split?)")
    n = 0
    for shard in shards:
        key, members = None, {}
        with tarfile.open(shard, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                k, ext = split_member_name(Path(info.name).name)
                if key is not None and k != key:
                    yield key, members
                    n += 1
                    if limit is not None and n >= limit:
                        return
                    members = {}
                key = k
                members[ext] = tar.extractfile(info).read()
        if key is not None and members:
            yield key, members
            n += 1
            if limit is not None and n >= limit:
                return


def write_split_images(out: str | Path, dest: str | Path, split: str = "test", limit: int | None = None) -> Path:
    """Export the split's images (``<id>.<ext>``, bytes as stored) into ``dest``: the real set of FID/KID."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for sample_id, members in iter_split_samples(out, split, limit):
        ext = next((e for e in ("jpg", "png", "webp") if e in members), None)
        if ext:
            (dest / f"{sample_id}.{ext}").write_bytes(members[ext])
    return dest


@dataclass
class VirtualModelCondition:
    id: str
    caption: str
    persons: list[PersonPose]  # at the condition's size
    product_mask: np.ndarray | None  # m: HxW bool at the condition's size (mask.png: the union of the products)
    size: tuple[int, int]  # (height, width)
    product_labels: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        return f"{self.id}.png"

    @property
    def product_masks(self) -> list[np.ndarray]:
        """The products OER scores, one mask each (here the one mask m)."""
        return [] if self.product_mask is None else [self.product_mask]


def virtualmodel_condition(sample_id: str, members: dict[str, bytes]) -> VirtualModelCondition:
    """What VirtualModel is conditioned on, read from a test sample (annotation, caption, product mask)."""
    ann = json.loads(members["json"])
    size = (int(ann["image"]["height"]), int(ann["image"]["width"]))
    caption = members["txt"].decode("utf-8") if "txt" in members else (ann.get("caption") or {}).get("text", "")
    persons = [
        PersonPose(tuple(float(v) for v in p["box"]), np.asarray(p["keypoints"], np.float64))
        for p in ann.get("persons", [])
        if "keypoints" in p
    ]
    mask = decode_mask(members["mask.png"]) > 0 if "mask.png" in members else None
    labels = tuple(str(q.get("label", "")) for q in ann.get("products", []))
    return VirtualModelCondition(sample_id, caption, persons, mask, size, labels)


def scaled_to(cond: VirtualModelCondition, height: int, width: int) -> tuple[list[PersonPose], np.ndarray | None]:
    """The condition's persons and product mask at a generated image's size."""
    sy, sx = height / cond.size[0], width / cond.size[1]
    persons = []
    for p in cond.persons:
        kp = p.keypoints.copy()
        kp[:, 0] *= sx
        kp[:, 1] *= sy
        x0, y0, x1, y1 = p.box
        persons.append(PersonPose((x0 * sx, y0 * sy, x1 * sx, y1 * sy), kp))
    mask = cond.product_mask
    if mask is not None and mask.shape != (height, width):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)) > 0
    return persons, mask


def scaled_masks(cond, height: int, width: int) -> list[np.ndarray]:
    """Each product mask of the condition (``cond.product_masks``) at a generated image's size."""
    return [
        m
        if m.shape == (height, width)
        else np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)) > 0
        for m in cond.product_masks
    ]


def _check_generated(fake_dir: Path, conditions: list[VirtualModelCondition]) -> None:
    missing = [c.file for c in conditions if not (fake_dir / c.file).is_file()]
    if missing:
        raise EvalError(
            f"{fake_dir}: {len(missing)} generated image(s) missing (e.g. {', '.join(missing[:3])}); one <id>.png per condition"
        )


def _generated(
    fake_dir: Path, conditions: list[VirtualModelCondition], batch: int
) -> Iterator[list[tuple[VirtualModelCondition, np.ndarray]]]:
    chunk = []
    for c in conditions:
        chunk.append((c, decode_image((fake_dir / c.file).read_bytes())))
        if len(chunk) == batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- scoring -----------------------------------------------------------------------------------
def score_virtualmodel(
    fake_dir: str | Path,
    real: str | Path,
    conditions: list[VirtualModelCondition],
    pose_backend,
    segment_service=None,
    segment_backends: dict | None = None,
    oer_box_scale: float = 1.0,
    batch_size: int = 16,
    **image_metric_options,
) -> dict:
    """Table 1 numbers of the generated images in ``fake_dir`` (one ``<id>.png`` per condition).

    ``pose_backend``: a PoseEstimator run on the generated images (top-down on the condition's
    boxes). ``segment_service``/``segment_backends``: the products segmenter for OER's M, prompted
    per product with the box of its m (grown ``oer_box_scale`` times); OER is averaged over the
    products (``metrics.oer.product_oer``). ``image_metric_options`` go to ``image_metrics``.
    """
    fake_dir = Path(fake_dir)
    if not conditions:
        raise EvalError("no conditions to score")
    _check_generated(fake_dir, conditions)
    metrics: ImageMetrics = image_metrics(real, fake_dir, captions={c.file: c.caption for c in conditions}, **image_metric_options)
    if segment_service is None and any(c.product_masks for c in conditions):
        from hoiforge.models.segment_service import ProductSegmenter

        segment_service = ProductSegmenter(load_detector=False, **(segment_backends or {}))  # loaded once for all batches
    from hoiforge.eval.runs import tracked

    gts, preds, sizes, oer_values = [], [], [], []
    batches = -(-len(conditions) // batch_size)
    for chunk in tracked(
        _generated(fake_dir, conditions, batch_size), batches, "pose + OER batches", image_metric_options.get("progress", True)
    ):
        images, boxes, oer_images, oer_given = [], [], [], []
        for cond, rgb in chunk:
            h, w = rgb.shape[:2]
            persons, _ = scaled_to(cond, h, w)
            gts.append(persons)
            sizes.append((h, w))
            images.append(rgb)
            boxes.append([p.box for p in persons])
            masks = scaled_masks(cond, h, w)
            if masks:
                oer_images.append(rgb)
                oer_given.append(masks)
        preds += estimate_poses(images, boxes, pose_backend)
        if oer_images:
            oer_values += product_oer(oer_images, oer_given, oer_box_scale, service=segment_service).per_image
    pose = pose_ap(gts, preds, sizes)
    oer = oer_of(oer_values)
    doc = metrics.to_json()
    doc.update(
        ap=pose["wholebody"]["AP"],
        ar=pose["wholebody"]["AR"],
        pose=pose,
        oer_pct=oer.percent,
        oer_n=oer.n,
        kid_x1k=metrics.kid.x1000,
        warnings=metrics.warnings,
    )
    return doc


def score_shoemodel(fake_dir: str | Path, real: str | Path, captions: dict[str, str], **image_metric_options) -> dict:
    """Table 3 numbers: FID, KID, CLIP score of the generated shoe images against the real test images."""
    metrics = image_metrics(real, fake_dir, captions=captions, **image_metric_options)
    return {**metrics.to_json(), "warnings": metrics.warnings}


# -- rows --------------------------------------------------------------------------------------
_DETAILS = ("kid_std", "kid_subset_size", "n_real", "n_fake", "clip_n", "clip_truncated", "clip_truncation", "oer_n", "resize", "extractor")


def virtualmodel_row(label: str, scores: dict, settings: GenerationSettings, task: str = "OHG") -> ResultRow:
    """A Table 1 / Table 4 row (Table 4 reads ap, ar, oer_pct of the same row)."""
    metrics = {k: scores.get(k) for k in ("fid", "kid_x1k", "clip", "ap", "ar", "oer_pct")}
    details = {k: scores[k] for k in _DETAILS if k in scores}
    details["pose"] = scores.get("pose", {})
    return ResultRow(label, metrics, settings, details, {"task": task})


def shoemodel_row(label: str, scores: dict, settings: GenerationSettings) -> ResultRow:
    metrics = {k: scores.get(k) for k in ("fid", "kid_x1k", "clip")}
    if metrics["kid_x1k"] is None and scores.get("kid") is not None:
        metrics["kid_x1k"] = 1000.0 * scores["kid"]
    return ResultRow(label, metrics, settings, {k: scores[k] for k in _DETAILS if k in scores})


def wd_row(label: str, cm, class_names: tuple[str, ...] = ("background", "visible", "wearable"), n_images: int | None = None) -> ResultRow:
    """A Table 5 row from a confusion matrix; a 2-class WD (other / wearable) fills the BG columns with 'other'."""
    s = segmentation_scores(cm, list(class_names))
    first, last = class_names[0], class_names[-1]
    metrics = {
        "bg_iou": s["IoU"][first],
        "bg_acc": s["Acc"][first],
        "visible_iou": s["IoU"].get("visible") if len(class_names) == 3 else None,
        "visible_acc": s["Acc"].get("visible") if len(class_names) == 3 else None,
        "wearable_iou": s["IoU"][last],
        "wearable_acc": s["Acc"][last],
        "miou": s["mIoU"],
        "macc": s["mAcc"],
        "aacc": s["aAcc"],
    }
    return ResultRow(label, metrics, GenerationSettings(sampler="segmentation", n=n_images), {"pixels": s["pixels"]})
