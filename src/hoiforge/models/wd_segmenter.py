"""Wearable-area (WD) segmenter inference: 3-class SegFormer labels + per-pixel confidence + review flag.

The model comes from the ShoeModel training issue: a transformers
``SegformerForSemanticSegmentation`` with ``num_labels=3`` (background, visible, wearable),
either a saved model directory (``save_pretrained``) or that directory's ``config.json`` plus a
torch state dict (``weights: model.pt``, loaded with ``weights_only=True``, strict). Nothing is
downloaded: ``model`` is a local directory or a cached Hugging Face repo id (models/weights/hf_local.py).

Per image: resize to the model's input size, ImageNet (or the directory's preprocessor)
normalisation, logits upsampled bilinearly to the image size, softmax; label = argmax,
confidence = max probability. Pixels outside ``valid`` (the shoe-only image's alpha) are
background with confidence 1. An image is flagged for review when the mean confidence over
its valid pixels is below ``min_confidence`` or the wearable class covers less than
``min_wearable`` of the non-background pixels (an unworn shoe shows its opening).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.weights.hf_local import resolve_model_dir

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NUM_CLASSES = 3


@dataclass
class WearPrediction:
    labels: np.ndarray  # HxW uint8 in {0, 1, 2}
    confidence: np.ndarray  # HxW float32 in [1/3, 1]
    mean_confidence: float
    wearable_fraction: float  # class-2 pixels / non-background pixels
    review: bool
    review_reasons: list[str] = field(default_factory=list)


class SegformerWearSegmenter:
    package = "transformers"

    name = "segformer-wd"

    def __init__(
        self,
        model: str,
        weights: str | None = None,
        size: int | None = None,
        device: str | None = None,
        dtype: Dtype | None = None,
        batch_size: int = 8,
        min_confidence: float = 0.8,
        min_wearable: float = 0.02,
    ):
        self.check(model=model, weights=weights)
        import torch
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        folder = resolve_model_dir(model, "wear segmenter")
        config = SegformerConfig.from_pretrained(folder)
        if config.num_labels != NUM_CLASSES:
            raise BackendUnavailable(
                f"wear segmenter: {folder} has num_labels={config.num_labels}; the WD model has 3 (background, visible, wearable)"
            )
        if weights:
            net = SegformerForSemanticSegmentation(config)
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state, strict=True)
        else:
            net = SegformerForSemanticSegmentation.from_pretrained(folder)
        self.device, self.dtype = device_dtype(device, dtype)
        self.net = net.to(self.device, self.dtype).eval()
        pre = _preprocessor(folder)
        self.size = size or pre.get("size") or 512
        self.mean = np.array(pre.get("image_mean", IMAGENET_MEAN), np.float32)
        self.std = np.array(pre.get("image_std", IMAGENET_STD), np.float32)
        self.batch_size, self.min_confidence, self.min_wearable = batch_size, min_confidence, min_wearable

    @classmethod
    def check(cls, model: str | None = None, weights: str | None = None, **_) -> None:
        require("torch", "pip install torch")
        require("transformers", "pip install transformers")
        folder = resolve_model_dir(model, "wear segmenter")
        if weights:
            if not Path(weights).is_file():
                raise BackendUnavailable(f"wear segmenter: weights file {weights} does not exist")
        elif not any((folder / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
            raise BackendUnavailable(
                f"wear segmenter: {folder} holds no model.safetensors; give options.weights (a state dict .pt) or a saved model directory"
            )

    def predict(self, images: list[np.ndarray], valid: list[np.ndarray | None] | None = None) -> list[WearPrediction]:
        valid = valid or [None] * len(images)
        out: list[WearPrediction] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            probs = self._probabilities(chunk)
            out += [self._postprocess(p, v) for p, v in zip(probs, valid[start : start + len(chunk)], strict=True)]
        return out

    def _probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Per image, 3 x H x W class probabilities at the image's own size."""
        import cv2
        import torch
        import torch.nn.functional as F

        batch = np.stack(
            [(cv2.resize(_rgb(im), (self.size, self.size), interpolation=cv2.INTER_LINEAR) / 255.0 - self.mean) / self.std for im in images]
        )
        x = torch.from_numpy(batch.transpose(0, 3, 1, 2).astype(np.float32)).to(self.device, self.dtype)
        with torch.inference_mode():
            logits = self.net(pixel_values=x).logits.float()
        probs = []
        for im, lg in zip(images, logits, strict=True):
            up = F.interpolate(lg[None], size=im.shape[:2], mode="bilinear", align_corners=False)[0]
            probs.append(up.softmax(0).cpu().numpy())
        return probs

    def _postprocess(self, prob: np.ndarray, valid: np.ndarray | None) -> WearPrediction:
        labels = prob.argmax(0).astype(np.uint8)
        confidence = prob.max(0).astype(np.float32)
        if valid is not None:
            labels[~valid] = 0
            confidence[~valid] = 1.0
        region = valid if valid is not None else np.ones(labels.shape, bool)
        mean_conf = float(confidence[region].mean()) if region.any() else 0.0
        fg = labels > 0
        wearable = float((labels == 2).sum() / fg.sum()) if fg.any() else 0.0
        reasons = []
        if mean_conf < self.min_confidence:
            reasons.append(f"mean confidence {mean_conf:.3f} < {self.min_confidence}")
        if wearable < self.min_wearable:
            reasons.append(f"wearable area {wearable:.3f} of the shoe < {self.min_wearable}")
        return WearPrediction(labels, confidence, round(mean_conf, 4), round(wearable, 4), bool(reasons), reasons)


def _rgb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 of a grey, RGB or RGBA array (RGBA composited on black, as shoe.png is)."""
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, -1)
    if image.shape[-1] == 4:
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        return (image[..., :3].astype(np.float32) * alpha).astype(np.uint8)
    return image


def _preprocessor(folder: Path) -> dict:
    """Mean/std/size from the directory's preprocessor_config.json, when it has one."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text())
    size = cfg.get("size")
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge")
    return {k: v for k, v in {"image_mean": cfg.get("image_mean"), "image_std": cfg.get("image_std"), "size": size}.items() if v}
