"""Products = detector boxes + segmenter masks; one service for the products stage and for eval.

``ProductSegmenter`` composes a detector backend (boxes from an image and a text prompt) and a
segmenter backend (a mask per box). The products stage builds shards with it; eval's OER calls
``segment(images, prompt=...)`` or ``segment(images, boxes=...)`` on generated images, so both
run the same code.

Backends (recipe names):

| detector | what |
|---|---|
| ``worn-held`` | what persons wear (garment regions) and hold (object at a hand), mediapipe; gives masks too |
| ``embedded`` | class-agnostic salient non-person foreground (mediapipe + GrabCut); gives masks too |
| ``grounding-dino`` | GroundingDINO (transformers), open vocabulary, labels = prompt phrases |

| segmenter | what |
|---|---|
| ``embedded`` | the embedded detector's own masks; for given boxes, box-initialised GrabCut |
| ``sam`` | SAM, original checkpoints (segment-anything) |
| ``hf-sam`` | SAM through transformers ``SamModel`` |
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models import registry
from hoiforge.models.tasks import Product

DETECTOR_TASK, SEGMENTER_TASK = "product-detector", "box-segmenter"
Box = tuple[float, float, float, float]


def _load(task: str, name: str, options: dict[str, Any]) -> Any:
    try:
        b = registry.backend(task, name)
        typed = registry.validate_options(b, options)
    except (KeyError, ValueError) as e:
        raise BackendUnavailable(f"products {task}: {e.args[0]}") from None
    return registry.instantiate(b, typed)


class ProductSegmenter:
    def __init__(
        self,
        detector: str = "embedded",
        segmenter: str = "embedded",
        detector_options: dict[str, Any] | None = None,
        segmenter_options: dict[str, Any] | None = None,
        load_detector: bool = True,
    ):
        self.detector_name, self.segmenter_name = detector, segmenter
        self.detector_options, self.segmenter_options = dict(detector_options or {}), dict(segmenter_options or {})
        self.detector = _load(DETECTOR_TASK, detector, self.detector_options) if load_detector else None
        # The embedded detectors already give masks: a second (GrabCut) pass would only redo them.
        self._reuse_masks = detector in ("embedded", "worn-held") and segmenter == "embedded"
        self.segmenter = None if self._reuse_masks and load_detector else _load(SEGMENTER_TASK, segmenter, self.segmenter_options)

    def close(self) -> None:
        for b in (self.detector, self.segmenter):
            if b is not None and hasattr(b, "close"):
                b.close()

    def detect(self, images: list[np.ndarray], prompt: str, persons: list[list[Box]] | None = None) -> list[list[Product]]:
        """Products with boxes, labels and masks (HxW bool at image size); ``persons``: known person
        boxes per image, for a detector that looks at persons (``takes_persons``)."""
        if self.detector is None:
            raise ValueError("this ProductSegmenter was built for boxes only (load_detector=False)")
        if getattr(self.detector, "takes_persons", False):
            found = self.detector.detect(images, prompt, persons=persons)
        else:
            found = self.detector.detect(images, prompt)
        if self._reuse_masks:
            return found
        masks = self.segmenter.segment(images, [[p.box for p in ps] for ps in found])
        for ps, ms in zip(found, masks, strict=True):
            for p, (mask, score) in zip(ps, ms, strict=True):
                p.mask, p.mask_score = mask, score
        return found

    def segment_boxes(self, images: list[np.ndarray], boxes: list[list[Box]]) -> list[list[tuple[np.ndarray, float]]]:
        """A mask (and its score) per given box: OER with boxes known, or a box-only detector."""
        if self.segmenter is None:
            self.segmenter = _load(SEGMENTER_TASK, self.segmenter_name, self.segmenter_options)
        return self.segmenter.segment(images, boxes)


def segment(
    images: list[np.ndarray],
    boxes: list[list[Box]] | None = None,
    prompt: str | None = None,
    service: ProductSegmenter | None = None,
    **backends: Any,
) -> list[list[np.ndarray]]:
    """Product masks (HxW bool) per image: for the given boxes, or for what ``prompt`` detects.

    Eval (OER) calls this on generated images; pass a ``service`` to reuse loaded models across
    calls, or backend keywords (``detector=``, ``segmenter=``, ``*_options=``) to build one.
    """
    if (boxes is None) == (prompt is None):
        raise ValueError("segment() takes boxes or a prompt, exactly one of them")
    if service is None:
        service = ProductSegmenter(load_detector=boxes is None, **backends)
    if boxes is not None:
        return [[m for m, _ in per] for per in service.segment_boxes(images, boxes)]
    return [[p.mask for p in ps] for ps in service.detect(images, prompt)]
