"""The frozen and base models VirtualModel runs on: UNet, VAE, CLIP text encoder + tokenizer, DINOv2, noise schedule.

``tiny`` builds every one from its config with a fixed seed (so the same config rebuilds the same
untrained weights); ``sd15`` loads Stable Diffusion 1.5 and DINOv2 from a local folder or the
Hugging Face cache, never downloading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hoiforge.errors import BackendUnavailable
from hoiforge.training.virtualmodel.config import VirtualModelConfig
from hoiforge.training.virtualmodel.model import BranchSpec
from hoiforge.training.virtualmodel.tokenizer import byte_clip_tokenizer

log = logging.getLogger("hoiforge.training")

UNTRAINED_WARNING = (
    "config {name!r} is UNTRAINED: every model is randomly initialised from its config; it tests the code path, "
    "its images are noise. Use --config sd15 (local SD1.5 + DINOv2 weights) for real training."
)

# Stable Diffusion's training noise schedule (scheduler/scheduler_config.json of SD1.5).
SD_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


@dataclass
class Components:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    dino: Any
    schedule: dict[str, Any]
    dino_image_size: int
    ids: dict[str, str] = field(default_factory=dict)  # precompute ids these models accept

    @property
    def latent_scale(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))

    def branch_spec(self, cfg: VirtualModelConfig) -> BranchSpec:
        b = cfg.branches
        d = self.dino.config
        patches = (self.dino_image_size // d.patch_size) ** 2
        return BranchSpec(
            channel_fraction=b.channel_fraction,
            identity_branch=b.identity_branch,
            content_branch=b.content_branch,
            close_view=b.close_view,
            expert_channels=tuple(b.expert_channels),
            mask_channels=tuple(b.mask_channels),
            view_dim=d.hidden_size,
            view_tokens=patches + 1 + int(getattr(d, "num_register_tokens", 0) or 0),
        )


def build_components(cfg: VirtualModelConfig) -> Components:
    from hoiforge.training.virtualmodel.config_check import check_config

    check_config(cfg)  # sizes and shapes before anything is allocated: a RUN's config.yaml is received data
    if cfg.models.source == "random":
        log.warning(UNTRAINED_WARNING.format(name=cfg.name))
        return _random(cfg)
    return _pretrained(cfg)


def _random(cfg: VirtualModelConfig) -> Components:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, Dinov2Config, Dinov2Model

    m = cfg.models
    missing = [k for k in ("unet", "vae", "text_encoder", "dino_config") if getattr(m, k) is None]
    if missing:
        raise BackendUnavailable(f"config {cfg.name!r}: source 'random' needs models.{', models.'.join(missing)}")
    tokenizer = byte_clip_tokenizer()
    vocab = len(tokenizer)
    torch.manual_seed(m.seed)
    unet = UNet2DConditionModel(**m.unet)
    torch.manual_seed(m.seed + 1)
    vae = AutoencoderKL(**m.vae)
    torch.manual_seed(m.seed + 2)
    text_cfg = {"vocab_size": vocab, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1, **m.text_encoder}
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    torch.manual_seed(m.seed + 3)
    dino = Dinov2Model(Dinov2Config(**m.dino_config))
    ident = f"random:{cfg.name}:{m.seed}"
    return Components(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        dino=dino,
        schedule=dict(SD_SCHEDULE),
        dino_image_size=m.dino_image_size,
        ids={k: v for k, v in m.precomputed.items()} or {"vae": ident, "text_encoder": ident, "dino": ident},
    )


def _local(name_or_path: str, what: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    from hoiforge.models.weights.registry import resolve

    try:
        return resolve(name_or_path)
    except BackendUnavailable as e:
        raise BackendUnavailable(f"{what}: {e}") from None


def _pretrained(cfg: VirtualModelConfig) -> Components:
    import json

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer, Dinov2Model

    m = cfg.models
    if not (m.stable_diffusion and m.dino):
        raise BackendUnavailable(f"config {cfg.name!r}: source 'pretrained' needs models.stable_diffusion and models.dino")
    sd = _local(m.stable_diffusion, "Stable Diffusion")
    dino_dir = _local(m.dino, "DINOv2")
    from hoiforge.training.virtualmodel.config_check import check_pretrained_folder

    check_pretrained_folder(sd, "Stable Diffusion")
    check_pretrained_folder(dino_dir, "DINOv2")
    for sub in ("unet", "vae", "text_encoder", "tokenizer"):
        if not (sd / sub).is_dir():
            raise BackendUnavailable(f"{sd} has no {sub}/ folder; point models.stable_diffusion at a Stable Diffusion 1.5 folder")
    schedule = dict(SD_SCHEDULE)
    sched_file = sd / "scheduler" / "scheduler_config.json"
    if sched_file.is_file():
        schedule.update({k: v for k, v in json.loads(sched_file.read_text()).items() if not k.startswith("_")})
    return Components(
        unet=UNet2DConditionModel.from_pretrained(sd / "unet", local_files_only=True),
        vae=AutoencoderKL.from_pretrained(sd / "vae", local_files_only=True),
        text_encoder=CLIPTextModel.from_pretrained(sd / "text_encoder", local_files_only=True),
        tokenizer=CLIPTokenizer.from_pretrained(sd / "tokenizer", local_files_only=True),
        dino=Dinov2Model.from_pretrained(dino_dir, local_files_only=True),
        schedule=schedule,
        dino_image_size=m.dino_image_size,
        ids=dict(m.precomputed),
    )


def noise_scheduler(components: Components):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(components.schedule)


def ddim_scheduler(components: Components):
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(components.schedule)
