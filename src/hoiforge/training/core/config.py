"""The training core's settings: one pydantic model per concern, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimizerConfig(_Strict):
    """Which optimizer over the trainable parameters, and its learning-rate schedule."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    eps: float = Field(1e-8, gt=0)
    schedule: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)


class EMAConfig(_Strict):
    """Exponential moving average of the trainable weights (diffusers' EMAModel)."""

    decay: float = Field(0.9999, gt=0, lt=1)
    update_after_step: int = Field(0, ge=0)
    validate_with_ema: bool = Field(True, description="swap the EMA weights in for validation images")


class TrainConfig(_Strict):
    """One training run of one stage. Everything it writes lives under ``output_dir`` (see core/__init__)."""

    output_dir: Path
    name: str = Field("train", pattern=r"^[A-Za-z0-9_-]+$", description="stage name: prefixes checkpoints, weights, images, metrics")
    max_steps: int = Field(ge=0, description="optimizer steps to reach (a resumed run continues up to it)")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_accumulation_steps: int = Field(1, ge=1)
    gradient_checkpointing: bool = False
    max_grad_norm: float | None = Field(1.0, gt=0)
    ema: EMAConfig | None = None
    checkpoint_every: int = Field(500, ge=1)
    checkpoints_keep: int | None = Field(3, ge=1, description="newest checkpoints of this stage kept; None keeps all")
    validate_every: int | None = Field(None, ge=1, description="validation images every N steps (and at the end)")
    log_every: int = Field(1, ge=1, description="a metrics.jsonl line every N steps")
    seed: int = 0
    allow_tf32: bool = True
    progress: bool = True
