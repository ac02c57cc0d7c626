"""wear_labels: attach wearable-area labels (`<id>.wear.png`, 0/1/2) from humans or from the WD model.

``source: annotations`` imports human labels (datasets/wearable.py): a folder of PNG masks
(``labels_dir``, ``<stem>.png`` per image, 0/1/2 values or a 3-colour table) and/or a COCO-style
json (``coco_json``), matched by the input file's stem. A label of the wrong size or with an
unknown class value or colour fails that sample with the reason; an image with no label is
dropped, kept unlabelled or failed (``if_missing``). A label replaces the shoes stage's
bootstrap ``wear.png``.

``source: segmenter`` labels new shoe-only images with a trained WD segmenter
(models/wd_segmenter.py): ``input: image`` labels the sample's image (unworn shoe photos),
``input: shoe`` the shoes stage's ``shoe.png`` (its alpha bounds the shoe). Writes ``wear.png``,
``<id>.wearconf.png`` (max softmax probability x 255) and a review flag with its reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from hoiforge.datasets import wearable as W
from hoiforge.datasets.views import box_of, crop_square, paste_square, pixel_square, square_box
from hoiforge.errors import BackendUnavailable
from hoiforge.stages.base import MetricSpec, Sample, Slot, SlotConfig, Stage, StageParams, slot


class WearLabelsParams(StageParams):
    source: Literal["annotations", "segmenter"] = "annotations"
    labels_dir: str | None = Field(None, description="annotations: folder of <stem>.png masks (0/1/2 values or 3 colours)")
    coco_json: str | None = Field(None, description="annotations: COCO-style json with categories visible/wearable")
    colours: dict[str, int] | None = Field(
        None, description="3-colour masks: {'r,g,b' or '#rrggbb': class}; default black 0, red 1, green 2"
    )
    categories: dict[str, int] | None = Field(None, description="COCO category name -> class; default visible 1, wearable 2")
    if_missing: Literal["drop", "keep", "fail"] = Field("drop", description="an image with no annotation")
    input: Literal["image", "shoe"] = Field("image", description="segmenter: label the image, or the shoes stage's shoe.png")
    crop_margin: float = Field(0.15, ge=0, le=1, description="input shoe: the square around the shoes, their box grown by this per side")
    segmenter: Annotated[SlotConfig | None, Slot("wear-segmenter")] = slot(None)

    # Before backend slots, segmenter_options alone meant the SegFormer backend.
    _legacy_backends: ClassVar[dict[str, str]] = {"segmenter": "segformer"}

    @model_validator(mode="after")
    def _check(self) -> WearLabelsParams:
        if self.source == "annotations" and not (self.labels_dir or self.coco_json):
            raise ValueError("wear_labels: source 'annotations' needs labels_dir and/or coco_json")
        if self.source == "segmenter" and self.segmenter is None:
            raise ValueError(
                "source 'segmenter' needs the segmenter slot: segmenter: {backend: segformer, options: {model: <trained WD dir>}}"
            )
        if self.source == "annotations" and self.segmenter is not None:
            raise ValueError("source 'annotations' imports labels: remove the segmenter slot (or set source: segmenter)")
        if self.colours is not None:
            W.parse_colours(self.colours)
        return self


def input_stem(s: Sample) -> str:
    """The input's path relative to its input folder, list folder or tar, without extension, which annotations
    are matched by (datasets/label_match.py): the file stem alone would give a/001.jpg and b/001.jpg one label."""
    from hoiforge.datasets.label_match import label_key

    return label_key(s.ann.get("source", {}).get("path") or Path(s.member or s.uri).name)


class WearLabels(Stage):
    name = "wear_labels"
    Params = WearLabelsParams
    writes = ("wear.png", "wearconf.png", "wear")
    metrics = (
        MetricSpec("wear_wearable", "count", "pixels", "wearable-area pixels (annotated labels)", plot="histogram"),
        MetricSpec("wear_confidence", "score", "mean confidence", "segmenter confidence", range=(0, 1)),
        MetricSpec("wear_review", "flag", title="flagged for human review"),
    )
    annotations = {"wear": W.WEAR_ANNOTATION}
    default_batch_size = 8

    def requires(self) -> tuple[str, ...]:
        return ("shoe.png",) if self.params.source == "segmenter" and self.params.input == "shoe" else ()

    def provides(self) -> tuple[str, ...]:
        return ("wear.png", "wear") + (("wearconf.png",) if self.params.source == "segmenter" else ())

    @property
    def execution(self) -> str:
        # An actor either way: the segmenter loads its model once, and the annotation index (a
        # COCO json can describe 100k images) is parsed once per actor instead of once per batch.
        return "actors"

    @property
    def backend_name(self) -> str:
        return self.params.segmenter.backend if self.params.segmenter else self.params.source

    def preflight(self) -> None:
        super().preflight()
        if self.params.source == "annotations":
            try:
                self._sources()
            except (OSError, ValueError, KeyError) as e:
                raise BackendUnavailable(f"wear_labels: cannot read the annotations: {e}") from None

    def _sources(self) -> list:
        p = self.params
        found: list = []
        if p.labels_dir:
            found.append(W.LabelFolder(p.labels_dir, p.colours))
        if p.coco_json:
            found.append(W.CocoLabels(p.coco_json, p.categories))
        return found

    def setup(self) -> None:
        super().setup()
        if self.params.source == "annotations":
            self.sources = self._sources()

    def process(self, samples: list[Sample]) -> None:
        if self.params.source == "segmenter":
            self._infer(samples)
        else:
            for s in samples:
                self._import(s)

    def _import(self, s: Sample) -> None:
        p = self.params
        h, w = s.rgb().shape[:2]
        stem = input_stem(s)
        for source in self.sources:
            try:
                found = source.labels_for(stem, w, h)
            except W.LabelError as e:
                self.fail(s, "bad_label", f"bad wear label: {e}")
                return
            if found is not None:
                labels, origin = found
                s.members["wear.png"] = W.encode_labels(labels)
                s.members.pop("wearconf.png", None)
                s.ann["wear"] = {"source": "annotation", "file": origin, **W.label_counts(labels)}
                s.metrics["wear_wearable"] = W.label_counts(labels)["wearable"]
                return
        if p.if_missing == "keep":
            return
        reason = f"no wear label for {stem!r}"
        if p.if_missing == "drop":
            self.drop(s, "missing", reason)
        else:
            self.fail(s, "missing", reason)

    def _infer(self, samples: list[Sample]) -> None:
        images, valid, boxes = [], [], []
        for s in samples:
            if self.params.input == "shoe":
                # WD looks at the shoe, not at a whole frame squashed to its input size: the square
                # around the shoes (the crop LpS and the WD trainer use), labels pasted back after.
                rgba = _decode_rgba(s.members["shoe.png"])
                alpha = rgba[..., 3] > 0
                box = square_box(box_of(alpha), self.params.crop_margin) if alpha.any() else [0, 0, *rgba.shape[1::-1]]
                crop = crop_square(rgba, box, pixel_square(box)[2], fill=0)
                images.append(crop)
                valid.append(crop[..., 3] > 0)
                boxes.append((box, rgba.shape[:2]))
            else:
                images.append(s.rgb())
                valid.append(None)
                boxes.append(None)
        segmenter = self.backends["segmenter"]
        for s, pred, placed in zip(samples, segmenter.predict(images, valid), boxes, strict=True):
            if placed is not None:
                box, shape = placed
                pred.labels, pred.confidence = paste_square(pred.labels, box, shape), paste_square(pred.confidence, box, shape)
            s.members["wear.png"] = W.encode_labels(pred.labels)
            s.members["wearconf.png"] = _encode_confidence(pred.confidence)
            s.ann["wear"] = {
                "source": f"segmenter:{segmenter.name}",
                **W.label_counts(pred.labels),
                "mean_confidence": pred.mean_confidence,
                "wearable_fraction": pred.wearable_fraction,
                "review": pred.review,
                "review_reasons": pred.review_reasons,
            }
            s.metrics["wear_confidence"] = pred.mean_confidence
            s.metrics["wear_review"] = pred.review


def _decode_rgba(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGBA"))


def _encode_confidence(confidence: np.ndarray) -> bytes:
    from hoiforge.datasets.images import encode_png

    return encode_png(np.round(np.clip(confidence, 0, 1) * 255).astype(np.uint8))
