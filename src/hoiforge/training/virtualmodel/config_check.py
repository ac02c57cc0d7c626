"""A VirtualModel config checked before any model is built (core/arch_limits): sizes in range, the
random models buildable on the meta device within the parameter bound, a pretrained folder's configs in range.

``build_components`` calls it, so training, resuming and ``generate`` (which reads a received RUN's
config.yaml) all refuse a crafted config in one sentence instead of allocating first.
"""

from __future__ import annotations

from pathlib import Path

from hoiforge.training.core.arch_limits import MAX_PARAMS, ArchitectureError, check_buildable, check_folder, check_values
from hoiforge.training.virtualmodel.config import VirtualModelConfig


def check_config(cfg: VirtualModelConfig) -> None:
    doc = cfg.model_dump(mode="json")
    for part in ("models", "branches", "data", "generate"):
        check_values(doc[part], part)
    m = cfg.models
    if m.source != "random":
        return
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, Dinov2Config, Dinov2Model

    from hoiforge.training.virtualmodel.tokenizer import byte_clip_tokenizer

    vocab = len(byte_clip_tokenizer())
    builders = {
        "unet": lambda: UNet2DConditionModel(**m.unet),
        "vae": lambda: AutoencoderKL(**m.vae),
        "text_encoder": lambda: CLIPTextModel(
            CLIPTextConfig(**{"vocab_size": vocab, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1, **m.text_encoder})
        ),
        "dino_config": lambda: Dinov2Model(Dinov2Config(**m.dino_config)),
    }
    total = 0
    for key, build in builders.items():
        if getattr(m, key) is not None:  # a missing one is build_components' sentence
            total += check_buildable(f"config {cfg.name!r} models.{key}", build)
    if total > MAX_PARAMS:
        raise ArchitectureError(
            f"config {cfg.name!r} models add up to {total / 1e9:.1f} B parameters, above the {MAX_PARAMS / 1e9:.0f} B built"
        )


def check_pretrained_folder(folder: Path, what: str) -> None:
    check_folder(folder, f"{what} {folder}")
