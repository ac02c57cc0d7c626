"""ShoeModel settings: one pydantic model per module, presets ``paper`` and ``tiny``, or a YAML file.

``paper`` holds the ShoeModel paper's settings (shared/PAPER_TABLES.md: WD 160k iterations, lr
6e-5, batch 16, 640x640; LpS phase 1 lr 5e-4, batch 240, 256x256; LpS phase 2 700k iterations,
lr 1e-4, batch 4096, T = 25; SW 500k iterations, lr 1e-5, batch 128, random 512x512 crops,
T = 1000) with pretrained weights read from a local path or the Hugging Face cache. What the
paper does not state is marked "(ours)" where it is set. Every ``train.batch_size`` is the paper's
GLOBAL batch; ``per_device_batch`` is what one 80 GB GPU holds (``--dry-run``), and gradient
accumulation follows from the processes launched (training/core/batch_plan.py).

``tiny`` builds every network at random from a small config of the same architecture: it runs
on a CPU in seconds and learns nothing useful (tests, smoke runs). Every checkpoint records which
preset made it, and generation with a tiny checkpoint says so.

A YAML file is a partial config over a base preset::

    base: paper            # or tiny (default paper)
    wd: {pretrained: /models/mit-b5, train: {batch_size: 8}}
    sw: {base_model: /models/sd15}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from hoiforge import safe_yaml
from hoiforge.training.core.config import ConfigError, TrainSettings
from hoiforge.training.core.config import Strict as _Strict

MODULES = ("wd", "lps1", "lps2", "sw")
__all__ = ["MODULES", "ConfigError", "ModuleTrain", "ShoeModelConfig", "TrainSettings", "load_config", "preset"]


class ModuleTrain(TrainSettings):
    """How one module trains: the core's TrainSettings (batch_size is the GLOBAL batch) plus how its shards stream."""

    optimizer: Literal["adam", "adamw"] = "adamw"
    num_workers: int = Field(0, ge=0, description="loader worker processes")
    shuffle_buffer: int = Field(256, ge=1, description="samples shuffled in memory while streaming")


class WDConfig(_Strict):
    """Wearable-area detector: SegFormer, 3 classes, on the square shoe-pair crop composited on black."""

    pretrained: str | None = Field(
        "nvidia/mit-b5", description="SegFormer encoder: a local directory or a cached HF repo id; None = random"
    )
    architecture: dict[str, Any] = Field(default_factory=dict, description="SegformerConfig keys for a random init (pretrained: null)")
    size: int = Field(640, ge=32)
    crop_margin: float = Field(0.15, ge=0, le=1, description="(ours) the square crop's margin around the shoe pair, per side")
    mosaic_p: float = Field(0.8, ge=0, le=1)
    rotate_p: float = Field(0.5, ge=0, le=1)
    rotate_deg: float = Field(15.0, ge=0, le=180)
    scale_range: tuple[float, float] = (0.5, 2.0)
    colour: bool = True
    eval_samples: int = Field(200, ge=1, description="samples scored at each validation (Table 5: 200 test images)")
    train: ModuleTrain = Field(
        default_factory=lambda: ModuleTrain(
            max_steps=160_000,
            batch_size=16,
            per_device_batch=4,
            lr=6e-5,
            optimizer="adamw",
            weight_decay=0.01,
            schedule="linear",
            warmup_steps=1500,
        )  # paper: 160k iterations, lr 6e-5, batch 16 on 4 GPUs (4 each); AdamW, wd 0.01, linear, warm-up 1500: mmseg's SegFormer schedule (ours)
    )


class LpS1Config(_Strict):
    """Foot keypoints from X_w: ViTPose (transformers) with an 8-keypoint heatmap head, no person box."""

    pretrained: str | None = Field(
        "usyd-community/vitpose-base-simple", description="ViTPose weights (backbone reused, 8-point head new); None = random"
    )
    architecture: dict[str, Any] = Field(default_factory=dict, description="VitPoseBackboneConfig keys for a random init")
    size: int = Field(256, ge=32)
    heatmap_size: int = Field(64, ge=8)
    sigma: float = Field(2.0, gt=0)
    crop_margin: float = Field(0.15, ge=0, le=1)
    min_score: float = Field(0.3, ge=0, le=1, description="a training point counts above this pose score")
    rotate_deg: float = Field(15.0, ge=0, le=180, description="paper: random rotation in [-15, 15] degrees")
    rotate_p: float = Field(0.5, ge=0, le=1, description="paper: rotation with probability 0.5")
    scale_range: tuple[float, float] = Field(
        (0.75, 1.25), description="paper: rescale and random crop, padding to 256; (ours) the range, mmpose's RandomBBoxTransform's"
    )
    shift: float = Field(0.1, ge=0, le=0.5, description="the random crop's offset, fraction of the crop side; (ours) mmpose's 0.1")
    flip_p: float = Field(0.0, ge=0, le=1, description="paper lists no flip: 0 (a horizontal flip would swap left/right points)")
    train: ModuleTrain = Field(
        default_factory=lambda: ModuleTrain(
            epochs=180, batch_size=240, per_device_batch=30, lr=5e-4, optimizer="adam", schedule="constant_with_warmup", warmup_steps=500
        )  # paper: 180 epochs, lr 5e-4, batch 240 on 8 GPUs (30 each); Adam + warm-up 500: mmpose's ViTPose schedule (ours)
    )


class LpS2Config(_Strict):
    """Leg keypoints from foot keypoints: an eps-predicting MLP diffusion on normalised vectors."""

    hidden: int = Field(512, ge=8)
    depth: int = Field(4, ge=1, description="residual MLP blocks")
    timesteps: int = Field(25, ge=2)
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    rescale_zero_snr: bool = False
    min_score: float = Field(0.3, ge=0, le=1, description="a point counts as seen above this pose score")
    rotate_deg: float = Field(15.0, ge=0, le=180, description="paper: rotation in [-15, 15] degrees, about the feet's centre")
    rotate_p: float = Field(0.5, ge=0, le=1)
    train: ModuleTrain = Field(
        default_factory=lambda: ModuleTrain(
            max_steps=700_000, batch_size=4096, per_device_batch=512, lr=1e-4, optimizer="adamw", checkpoint_every=10_000
        )
    )


class SWConfig(_Strict):
    """Shoe-wearing: ControlNet (6 conditioning channels) over a frozen text-conditioned SD UNet."""

    base_model: str | None = Field(
        "stable-diffusion-v1-5", description="a hoiforge weights entry, a local diffusers folder, or None for a tiny random base"
    )
    tiny_base: dict[str, Any] = Field(default_factory=dict, description="sizes of the random base when base_model is None")
    resolution: int = Field(512, ge=16, description="random square training crops of this side")
    empty_prompt_p: float = Field(0.0, ge=0, le=1, description="captions replaced by '' (diffusers' proportion_empty_prompts)")
    inference_steps: int = Field(30, ge=1, description="DDIM steps at generation (paper: DDIM)")
    guidance_scale: float = Field(7.0, ge=1.0)
    train: ModuleTrain = Field(
        default_factory=lambda: ModuleTrain(
            max_steps=500_000,
            batch_size=128,
            per_device_batch=16,
            lr=1e-5,
            optimizer="adamw",
            weight_decay=1e-2,
            mixed_precision="fp16",
            gradient_checkpointing=True,
            checkpoint_every=5000,
        )  # paper: 500k iterations, lr 1e-5, batch 128 on 8 GPUs (16 each, fits 80 GB: --dry-run); the rest diffusers' ControlNet recipe (ours)
    )


class GenerateConfig(_Strict):
    """How `generate shoemodel` finds the shoe in a photo without alpha (models/segment_service)."""

    detector: str = "embedded"
    segmenter: str = "embedded"
    detector_options: dict[str, Any] = Field(default_factory=dict)
    segmenter_options: dict[str, Any] = Field(default_factory=dict)
    prompt: str = "shoe"
    foot_min_score: float = Field(0.2, ge=0, le=1, description="an LpS phase-1 point counts as seen above this heatmap peak")


class ShoeModelConfig(_Strict):
    preset: str = "paper"
    wd: WDConfig = Field(default_factory=WDConfig)
    lps1: LpS1Config = Field(default_factory=LpS1Config)
    lps2: LpS2Config = Field(default_factory=LpS2Config)
    sw: SWConfig = Field(default_factory=SWConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)

    @property
    def is_tiny(self) -> bool:
        """Random small networks (the tiny preset or a YAML over it): nothing they make is meaningful."""
        return self.preset.split("+")[0] == "tiny"


def _tiny_train(batch_size: int, lr: float) -> dict[str, Any]:
    return {"max_steps": 20, "batch_size": batch_size, "lr": lr, "checkpoint_every": 10, "shuffle_buffer": 8}


TINY: dict[str, Any] = {
    "preset": "tiny",
    "wd": {
        "pretrained": None,
        "architecture": {
            "hidden_sizes": [8, 16, 24, 32],
            "num_attention_heads": [1, 1, 2, 2],
            "depths": [1, 1, 1, 1],
            "decoder_hidden_size": 32,
            "sr_ratios": [4, 2, 2, 1],
        },
        "size": 128,
        "eval_samples": 4,
        "train": {**_tiny_train(2, 1e-3), "optimizer": "adamw"},
    },
    "lps1": {
        "pretrained": None,
        "architecture": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2},
        "train": {**_tiny_train(2, 1e-3), "optimizer": "adam"},
    },
    "lps2": {"hidden": 64, "depth": 2, "train": {**_tiny_train(64, 1e-3)}},
    "sw": {
        "base_model": None,
        "resolution": 64,
        "inference_steps": 4,
        "train": {**_tiny_train(1, 1e-4), "mixed_precision": "no"},
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    # max_steps and epochs are one choice: an override of one replaces the base's other.
    for one, other in (("max_steps", "epochs"), ("epochs", "max_steps")):
        if over.get(one) is not None and other not in over and other in out:
            out[other] = None
    return out


def preset(name: str) -> ShoeModelConfig:
    if name == "paper":
        return ShoeModelConfig()
    if name == "tiny":
        return ShoeModelConfig.model_validate(TINY)
    raise ConfigError(f"unknown ShoeModel config {name!r}: use tiny, paper or a YAML file")


def load_config(name_or_path: str | Path) -> ShoeModelConfig:
    """``tiny``, ``paper`` or a YAML file (``base:`` preset plus overrides)."""
    text = str(name_or_path)
    if text in ("tiny", "paper"):
        return preset(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"ShoeModel config {text!r} is neither tiny, paper nor a YAML file")
    try:
        doc = safe_yaml.load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a ShoeModel config is a mapping (base: paper, wd: ..., lps1: ..., lps2: ..., sw: ...)")
    base = str(doc.pop("base", "paper"))
    start = ShoeModelConfig().model_dump() if base == "paper" else preset(base).model_dump()
    try:
        return ShoeModelConfig.model_validate({**_merge(start, doc), "preset": doc.get("preset", f"{base}+{path.name}")})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
