"""WD, the wearable-area detector: a 3-class SegFormer (background / visible / wearable) on the shoe-pair crop.

Input: the square shoe-pair crop of ``shoe.png`` composited on black, ``size`` x ``size``
(640 in the paper), ImageNet normalisation; target: ``wear.png`` cropped the same way. The saved
model directory (``save_pretrained`` + a ``preprocessor_config.json`` with the size and
normalisation) is what ``hoiforge.models.wd_segmenter.SegformerWearSegmenter`` loads, so the
`wear_labels` stage and `generate shoemodel` run the trained model through the same code.

Scores: per-class IoU/Acc, mIoU, mAcc, aAcc from a confusion matrix (hoiforge.metrics.segmentation,
mmseg's definitions, ShoeModel Table 5).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from hoiforge.datasets import wearable as W
from hoiforge.training.shoemodel import augment as A
from hoiforge.training.shoemodel import geometry as G
from hoiforge.training.shoemodel.config import WDConfig
from hoiforge.training.shoemodel.data import ShoeLegSample, on_black
from hoiforge.training.shoemodel.loader import each

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ID2LABEL = dict(enumerate(W.CLASSES))


def build(cfg: WDConfig):
    """SegformerForSemanticSegmentation with 3 labels: pretrained encoder (local/HF cache) or random from ``architecture``."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    labels = {"num_labels": 3, "id2label": ID2LABEL, "label2id": {v: k for k, v in ID2LABEL.items()}}
    if cfg.pretrained:
        from hoiforge.models.weights.hf_local import resolve_model_dir

        folder = resolve_model_dir(cfg.pretrained, "WD SegFormer encoder")
        # The encoder of a SegFormer (mit-bN) checkpoint; the 3-class decode head starts new.
        return SegformerForSemanticSegmentation.from_pretrained(folder, ignore_mismatched_sizes=True, **labels)
    return SegformerForSemanticSegmentation(SegformerConfig(**cfg.architecture, **labels))


# -- examples ----------------------------------------------------------------------------------
def crop(sample: ShoeLegSample, cfg: WDConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(rgb on black, labels, alpha) of the shoe-pair crop at ``cfg.size``; None without labels or shoe."""
    labels = sample.wear()
    if labels is None or not sample.has("shoe.png"):
        return None
    box = sample.crop_box(cfg.crop_margin)
    if box is None:
        return None
    rgba = sample.shoe_rgba()
    m = G.crop_matrix(box, cfg.size)
    return G.warp(on_black(rgba), m, cfg.size), G.warp(labels, m, cfg.size, nearest=True), G.warp(rgba[..., 3], m, cfg.size, nearest=True)


def normalise(rgb: np.ndarray) -> np.ndarray:
    """3 x H x W float32 with ImageNet mean/std (what SegformerWearSegmenter feeds the network)."""
    x = (rgb.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def examples(samples: Iterator[ShoeLegSample], rng: np.random.Generator, cfg: WDConfig) -> Iterator[dict[str, Any]]:
    crops = each(samples, lambda s: crop(s, cfg))
    for rgb, labels, alpha in A.with_mosaic(crops, rng, cfg.mosaic_p, cfg.size):
        rgb, labels, alpha = A.rescale_crop(rgb, labels, alpha, rng, cfg.size, cfg.scale_range)
        if rng.random() < cfg.rotate_p:
            rgb, labels, alpha = A.rotate(rgb, labels, alpha, rng, cfg.rotate_deg)
        if cfg.colour:
            rgb = A.photometric(rgb, alpha, rng)
        yield {"pixel_values": normalise(rgb), "labels": labels.astype(np.int64)}


def make_examples(cfg: WDConfig):
    return partial(examples, cfg=cfg)


def loss(batch: dict[str, Any], models) -> Any:
    return models["wd"](pixel_values=batch["pixel_values"], labels=batch["labels"]).loss


# -- scores and outputs ------------------------------------------------------------------------
def predict_labels(model, rgb_crops: list[np.ndarray]) -> list[np.ndarray]:
    """Class maps of crops (at their own size), argmax of the logits upsampled bilinearly."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    x = torch.from_numpy(np.stack([normalise(c) for c in rgb_crops])).to(device, dtype)
    logits = model(pixel_values=x).logits.float()
    up = F.interpolate(logits, size=rgb_crops[0].shape[:2], mode="bilinear", align_corners=False)
    return list(up.argmax(1).cpu().numpy().astype(np.uint8))


def score(model, crops: list[tuple[np.ndarray, np.ndarray, np.ndarray]], batch_size: int = 8) -> dict[str, Any]:
    """Table 5's scores (percent) of ``model`` on unaugmented (rgb, labels, alpha) crops."""
    import torch

    from hoiforge.metrics.segmentation import confusion_matrix, segmentation_scores

    cm = np.zeros((3, 3), np.int64)
    with torch.no_grad():
        for i in range(0, len(crops), batch_size):
            chunk = crops[i : i + batch_size]
            for pred, (_, labels, _) in zip(predict_labels(model, [c[0] for c in chunk]), chunk, strict=True):
                cm += confusion_matrix(pred, labels, 3)
    scores = segmentation_scores(cm, W.CLASSES)
    scores["confusion_matrix"] = cm.tolist()
    return scores


def overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The crop with visible tinted blue and wearable tinted red (validation images)."""
    out = rgb.astype(np.float32)
    for cls, colour in ((W.VISIBLE, (40, 90, 255)), (W.WEARABLE, (255, 40, 40))):
        hit = labels == cls
        out[hit] = 0.5 * out[hit] + 0.5 * np.array(colour, np.float32)
    return out.astype(np.uint8)


def save(model, folder: Path, size: int) -> Path:
    """A model directory SegformerWearSegmenter loads: config.json, model.safetensors, preprocessor_config.json."""
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    pre = {
        "image_processor_type": "SegformerImageProcessor",
        "do_resize": True,
        "size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
        "do_reduce_labels": False,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return folder
