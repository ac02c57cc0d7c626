"""LpS phase 1: the 8 foot keypoints (ankles, toes, heels) from X_w, without a person box.

Network: transformers ``VitPoseForPoseEstimation`` built from a config with ``num_labels=8`` and
a 256x256 backbone (patch 16 -> 16x16 tokens; the decoder upsamples x4 to the 64x64 MSRA
heatmaps). Why ViTPose: it is the pose family the project already runs (models/vitpose.py), it is
maintained inside transformers (no mmcv build), it builds from a config for the tiny tests, and
its heatmap head at 1/4 of the input is exactly the MSRA setting (256 -> 64). The paper config
starts from a ViTPose checkpoint (``usyd-community/vitpose-base-simple`` in the HF cache or a
local copy): its backbone is reused with the position embeddings resized from the checkpoint's
token grid (256x192 -> 16x12) to 16x16, and the 8-point head starts new.

Input: the square shoe-pair crop of X_w (shoe.png without the wearable area) on black, ImageNet
normalisation. Targets: unbiased Gaussian heatmaps, target-weighted MSE (heatmaps.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.training.shoemodel import augment as A
from hoiforge.training.shoemodel import geometry as G
from hoiforge.training.shoemodel import heatmaps as H
from hoiforge.training.shoemodel.config import ConfigError, LpS1Config
from hoiforge.training.shoemodel.data import FOOT_IN_LEG, ShoeLegSample, on_black
from hoiforge.training.shoemodel.loader import each
from hoiforge.training.shoemodel.wd import normalise

FOOT_NAMES = ("left_ankle", "right_ankle", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
PATCH = 16


def _config(cfg: LpS1Config, backbone: dict[str, Any]):
    from transformers import VitPoseBackboneConfig, VitPoseConfig

    bb = {**backbone, "image_size": [cfg.size, cfg.size], "patch_size": [PATCH, PATCH]}
    bb.setdefault("out_indices", [bb.get("num_hidden_layers", 12)])
    labels = {"num_labels": len(FOOT_NAMES), "id2label": dict(enumerate(FOOT_NAMES)), "label2id": {n: i for i, n in enumerate(FOOT_NAMES)}}
    # scale_factor 4: 16x16 tokens -> heatmap_size (64 for a 256 input).
    scale = cfg.heatmap_size // (cfg.size // PATCH)
    return VitPoseConfig(backbone_config=VitPoseBackboneConfig(**bb), scale_factor=scale, use_simple_decoder=True, **labels)


def build(cfg: LpS1Config):
    from transformers import VitPoseForPoseEstimation

    if cfg.size % PATCH or cfg.heatmap_size % (cfg.size // PATCH):
        raise ConfigError(f"LpS1: size {cfg.size} must be a multiple of {PATCH} and heatmap_size a multiple of size/{PATCH}")
    if not cfg.pretrained:
        return VitPoseForPoseEstimation(_config(cfg, dict(cfg.architecture)))
    return _from_checkpoint(cfg)


def _from_checkpoint(cfg: LpS1Config):
    """ViTPose weights with an 8-point head and the backbone's position embeddings resized to the square input."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from transformers import VitPoseConfig, VitPoseForPoseEstimation

    from hoiforge.models.weights.hf_local import resolve_model_dir

    folder = resolve_model_dir(cfg.pretrained, "LpS1 ViTPose")
    source = VitPoseConfig.from_pretrained(folder)
    bb = source.backbone_config.to_dict()
    keep = ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "qkv_bias", "hidden_act", "layer_norm_eps",
            "num_experts", "part_features", "drop_path_rate", "out_indices")  # fmt: skip
    model = VitPoseForPoseEstimation(_config(cfg, {k: bb[k] for k in keep if k in bb}))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise BackendUnavailable(f"LpS1: {folder} has no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    key = "backbone.embeddings.position_embeddings"
    if key in state:
        pos = state[key]
        old_h, old_w = (s // p for s, p in zip(bb["image_size"], bb["patch_size"], strict=True))
        new = cfg.size // PATCH
        grid = pos[:, 1:].reshape(1, old_h, old_w, -1).permute(0, 3, 1, 2)
        grid = (
            F.interpolate(grid.float(), size=(new, new), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, new * new, -1)
        )
        state[key] = torch.cat([pos[:, :1], grid.to(pos.dtype)], 1)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if any(not k.startswith("head.") for k in missing):
        raise BackendUnavailable(f"LpS1: {folder} lacks backbone weights {[k for k in missing if not k.startswith('head.')][:3]}")
    model.load_state_dict(usable, strict=False)
    return model


# -- examples ----------------------------------------------------------------------------------
def crop_and_points(sample: ShoeLegSample, margin: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(frame -> crop affine, X_w RGBA at full frame, 8 x 3 foot points in crop pixels) or None without a shoe."""
    if not sample.has("shoe.png") or not sample.has("leg.json"):
        return None
    xw = sample.wearable_removed()
    crop = sample.leg().get("crop")
    if isinstance(crop, dict) and crop.get("box") and crop.get("foot"):
        m = G.crop_matrix(tuple(float(v) for v in crop["box"]), size)
        foot = np.asarray(crop["foot"], np.float64).reshape(8, 3)
        foot[:, :2] *= size / float(crop.get("size", size))
        return m, xw, foot
    box = sample.crop_box(margin)
    if box is None:
        return None
    m = G.crop_matrix(box, size)
    foot = G.transform_points(sample.leg_points()[list(FOOT_IN_LEG)], m)
    return m, xw, foot


def example(sample: ShoeLegSample, rng: np.random.Generator, cfg: LpS1Config) -> dict[str, Any] | None:
    found = crop_and_points(sample, cfg.crop_margin, cfg.size)
    if found is None:
        return None
    m, xw, foot = found
    if not (foot[:, 2] > cfg.min_score).any():
        return None
    aug = A.keypoint_affine(rng, cfg.size, cfg.rotate_deg, cfg.rotate_p, cfg.scale_range, cfg.shift)
    rgb = G.warp(on_black(xw), G.compose(aug, m), cfg.size)
    pts = G.transform_points(foot, aug)
    if rng.random() < cfg.flip_p:
        rgb, pts = A.flip_horizontal(rgb, pts)
    target, weight = H.encode(pts, cfg.size, cfg.heatmap_size, cfg.sigma, cfg.min_score)
    return {"pixel_values": normalise(rgb), "target": target, "weight": weight}


def examples(samples: Iterator[ShoeLegSample], rng: np.random.Generator, cfg: LpS1Config) -> Iterator[dict[str, Any]]:
    return each(samples, lambda s: example(s, rng, cfg))


def make_examples(cfg: LpS1Config):
    return partial(examples, cfg=cfg)


def loss(batch: dict[str, Any], models) -> Any:
    heatmaps = models["lps1"](pixel_values=batch["pixel_values"]).heatmaps
    return H.weighted_mse(heatmaps.float(), batch["target"], batch["weight"])


def predict(model, rgb_crops: list[np.ndarray], refine: H.Refine = "dark") -> list[np.ndarray]:
    """Per crop, 8 x 3 [x, y, peak] in crop pixels (C_p before mapping back to the frame)."""
    import torch

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    size = rgb_crops[0].shape[0]
    with torch.no_grad():
        x = torch.from_numpy(np.stack([normalise(c) for c in rgb_crops])).to(device, dtype)
        heatmaps = model(pixel_values=x).heatmaps.float().cpu().numpy()
    out = []
    for hm in heatmaps:
        xy, peak = H.decode(hm, size, refine)
        out.append(np.concatenate([xy, peak[:, None]], 1))
    return out
