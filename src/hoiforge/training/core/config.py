"""The training settings: one pydantic model per concern, unknown keys rejected.

``TrainSettings`` is what a config file says about how one stage trains (both VirtualModel stages
and every ShoeModel module embed it); ``TrainConfig`` is what the loop runs, made from it by
``TrainSettings.core_config`` once the run folder, step count and batch plan are known.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hoiforge.errors import HoiforgeError
from hoiforge.training.core.batch_plan import BatchPlan


class ConfigError(HoiforgeError):
    """A training config that is missing, malformed, or does not match a run's checkpoints."""


class Strict(BaseModel):
    """Every config model: an unknown key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class OptimizerConfig(Strict):
    """Which optimizer over the trainable parameters, and its learning-rate schedule."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = Field(1e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    eps: float = Field(1e-8, gt=0)
    schedule: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)


class EMAConfig(Strict):
    """Exponential moving average of the trainable weights (diffusers' EMAModel)."""

    decay: float = Field(0.9999, gt=0, lt=1)
    update_after_step: int = Field(0, ge=0)
    validate_with_ema: bool = Field(True, description="swap the EMA weights in for validation images")


class TrainSettings(Strict):
    """How one stage trains, as a config file says it (every hoiforge trainer takes exactly these)."""

    batch_size: int = Field(ge=1, description="the GLOBAL batch (the papers' figure): per-device batch x devices x accumulation")
    per_device_batch: int | None = Field(
        None, ge=1, description="most samples one device holds per micro-step (fit it with --dry-run); None: the whole per-process share"
    )
    max_steps: int | None = Field(None, ge=0, description="optimizer steps (give this or epochs)")
    epochs: float | None = Field(None, gt=0, description="passes over the training split; steps = ceil(epochs x samples / batch_size)")
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping (None: off)")
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    ema: EMAConfig | None = None
    checkpoint_every: int = Field(1000, ge=1)
    checkpoints_keep: int | None = Field(3, ge=1, description="newest checkpoints kept; None keeps all")
    validate_every: int | None = Field(None, ge=1)
    log_every: int = Field(1, ge=1)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _no_accumulation_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "gradient_accumulation_steps" in data:
            raise ValueError(
                "gradient_accumulation_steps is derived now: batch_size is the global batch, "
                "set per_device_batch to what one GPU holds and the accumulation follows"
            )
        return data

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainSettings:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of max_steps and epochs")
        return self

    def steps(self, train_samples: int | None = None) -> int:
        """Optimizer steps of the run: ``max_steps``, or ``epochs`` over ``train_samples`` at the global batch."""
        if self.max_steps is not None:
            return self.max_steps
        if not train_samples:
            raise ConfigError(f"epochs={self.epochs} needs the size of the training split, and it is unknown or empty")
        return max(1, math.ceil(self.epochs * train_samples / self.batch_size))

    def optimizer_config(self, steps: int) -> OptimizerConfig:
        return OptimizerConfig(
            name=self.optimizer,
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            warmup_steps=min(self.warmup_steps, max(steps - 1, 0)),  # a short run (--max-steps) still ends its warm-up
        )

    def core_config(
        self, output_dir: Path, name: str, steps: int, plan: BatchPlan, mixed_precision: str | None = None, progress: bool = True
    ) -> TrainConfig:
        """The loop's config for ``steps`` optimizer steps with ``plan``'s accumulation."""
        return TrainConfig(
            output_dir=output_dir,
            name=name,
            max_steps=steps,
            optimizer=self.optimizer_config(steps),
            mixed_precision=mixed_precision or self.mixed_precision,
            gradient_accumulation_steps=plan.accumulation_steps,
            gradient_checkpointing=self.gradient_checkpointing,
            max_grad_norm=self.max_grad_norm,
            ema=self.ema,
            checkpoint_every=min(self.checkpoint_every, max(steps, 1)),
            checkpoints_keep=self.checkpoints_keep,
            validate_every=self.validate_every,
            log_every=self.log_every,
            seed=self.seed,
            progress=progress,
        )


class TrainConfig(Strict):
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
