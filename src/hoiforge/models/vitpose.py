"""Paper-grade whole-body pose: ViTPose (the VirtualModel paper's ViTPose-H whole-body) in transformers.

Top-down on the person boxes: transformers' ViTPose processor crops each box (padding 1.25,
affine warp to 256x192), the model predicts 133 heatmaps, the processor decodes them (DARK
refinement) back to image pixels. Flip test as in ViTPose's test config (heatmaps of the mirrored
crop flipped back with the left/right pairs and averaged). All persons of a batch of images run
as one batch; fp16 on GPU.

Weights: a directory written by ``hoiforge.models.weights.convert_vitpose`` (from the original
ViTPose-H whole-body or ViTPose++ checkpoint), or such a model in the HF cache. The Hugging Face
hub ViTPose checkpoints have a 17-keypoint head and are refused.
"""

from __future__ import annotations

import json
from typing import Annotated

import numpy as np

from hoiforge.datasets import keypoints as K
from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.registry import Weights
from hoiforge.models.weights.hf_local import resolve_model_dir

INSTALL = "pip install transformers torch"
CONVERT = "convert the original ViTPose whole-body checkpoint with `python -m hoiforge.models.weights.convert_vitpose CKPT OUT_DIR`"
FLIP_PAIRS = [(i, j) for i, j in enumerate(K.FLIP_INDEX) if i < j]


class VitPoseWholeBody:
    package = "transformers"

    name = "vitpose"

    def __init__(self, model: Annotated[str | None, Weights("vitpose-h-wholebody", "vitpose-h-wholebody-hf")] = None, device: str | None = None, dtype: Dtype | None = None,
                 flip_test: bool = True, max_batch: int = 64):  # fmt: skip
        require("transformers", INSTALL)
        import torch
        from transformers import AutoImageProcessor, VitPoseForPoseEstimation
        from transformers.models.vitpose.modeling_vitpose import VitPoseEstimatorOutput

        path = resolve_model_dir(model, "pose backend 'vitpose'")
        self.device, self.dtype = device_dtype(device, dtype)
        self.model = VitPoseForPoseEstimation.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        if self.model.config.num_labels != K.NUM_KEYPOINTS:
            raise BackendUnavailable(
                f"pose backend 'vitpose': {path} predicts {self.model.config.num_labels} keypoints, not 133; {CONVERT}"
            )
        self.processor = AutoImageProcessor.from_pretrained(path)  # the PIL one where torchvision is missing
        self.flip_test, self.max_batch = flip_test, max_batch
        self._flip_pairs = torch.tensor(FLIP_PAIRS, device=self.device)
        self._torch, self._output = torch, VitPoseEstimatorOutput

    @classmethod
    def check(cls, model: str | None = None, **options) -> None:
        require("transformers", INSTALL)
        path = resolve_model_dir(model, "pose backend 'vitpose'")
        labels = json.loads((path / "config.json").read_text()).get("id2label", {})
        if labels and len(labels) != K.NUM_KEYPOINTS:
            raise BackendUnavailable(f"pose backend 'vitpose': {path} has a {len(labels)}-keypoint head, not 133; {CONVERT}")

    def heatmaps(self, pixel_values):
        """133 heatmaps per crop, flip-tested; batches of at most ``max_batch`` crops."""
        torch = self._torch
        out = []
        with torch.inference_mode():
            for chunk in pixel_values.split(self.max_batch):
                x = chunk.to(self.device, self.dtype)
                maps = self.model(pixel_values=x).heatmaps.float()
                if self.flip_test:
                    flipped = self.model(pixel_values=x.flip(3), flip_pairs=self._flip_pairs).heatmaps.float()
                    maps = (maps + flipped) * 0.5
                out.append(maps.cpu())
        return torch.cat(out)

    def estimate(self, images: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]]) -> list[list[np.ndarray]]:
        # The processor takes COCO boxes (x, y, w, h); images without persons contribute no crop.
        coco = [[[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in image_boxes] for image_boxes in boxes]
        keep = [i for i, b in enumerate(coco) if b]
        results: list[list[np.ndarray]] = [[] for _ in images]
        if not keep:
            return results
        inputs = self.processor(images=[images[i] for i in keep], boxes=[coco[i] for i in keep], return_tensors="pt")
        outputs = self._output(heatmaps=self.heatmaps(inputs["pixel_values"]))
        decoded = self.processor.post_process_pose_estimation(outputs, boxes=[coco[i] for i in keep])
        for i, people in zip(keep, decoded, strict=True):
            for person in people:
                kp = np.zeros((K.NUM_KEYPOINTS, 3), dtype=np.float32)
                kp[:, :2] = person["keypoints"].numpy()
                kp[:, 2] = np.clip(person["scores"].numpy(), 0, 1)
                results[i].append(kp)
        return results
