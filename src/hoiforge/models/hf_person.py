"""Paper-grade person detector through transformers object detection (RT-DETR by default).

The paper used YOLOX; RT-DETR (``PekingU/rtdetr_r50vd``, COCO-trained, Apache-2.0) is the
transformers-native real-time detector of that class. Any ``AutoModelForObjectDetection``
checkpoint whose labels include "person" works (RT-DETRv2, DETR, ...). Loads from a local
directory or the HF cache (models.hf_local), batched, fp16 on GPU.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.registry import Weights
from hoiforge.models.tasks import Detection
from hoiforge.models.weights.hf_local import resolve_model_dir

INSTALL = "pip install transformers torch"


class HFPersonDetector:
    package = "transformers"

    def __init__(self, model: Annotated[str | None, Weights("rtdetr-r50vd-coco-o365")] = None, device: str | None = None, dtype: Dtype | None = None,
                 min_score: float = 0.3, label: str = "person"):  # fmt: skip
        require("transformers", INSTALL)
        import torch
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        path = resolve_model_dir(model, "person backend 'rtdetr'")
        self.device, self.dtype = device_dtype(device, dtype)
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.model = AutoModelForObjectDetection.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        ids = [int(i) for i, name in self.model.config.id2label.items() if name == label]
        if not ids:
            raise BackendUnavailable(
                f"person backend 'rtdetr': {path} has no '{label}' label (labels: {sorted(self.model.config.id2label.values())[:10]}...)"
            )
        self.label_id = ids[0]
        self.min_score = min_score  # keep candidates above this; the stage applies the recipe's threshold
        self.source = f"transformers-{self.model.config.model_type}"
        self._torch = torch

    @classmethod
    def check(cls, model: str = "PekingU/rtdetr_r50vd", **options) -> None:
        require("transformers", INSTALL)
        resolve_model_dir(model, "person backend 'rtdetr'")

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        torch = self._torch
        inputs = self.processor(images=images, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            outputs = self.model(pixel_values=pixel_values)
        outputs.logits, outputs.pred_boxes = outputs.logits.float(), outputs.pred_boxes.float()
        sizes = [img.shape[:2] for img in images]
        found = self.processor.post_process_object_detection(outputs, threshold=self.min_score, target_sizes=sizes)
        out = []
        for (h, w), res in zip(sizes, found, strict=True):
            dets = []
            for score, label, box in zip(res["scores"].tolist(), res["labels"].tolist(), res["boxes"].tolist(), strict=True):
                if label == self.label_id:
                    x0, y0, x1, y1 = box
                    dets.append(Detection((max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)), score, "person", self.source))
            out.append(dets)
        return out
