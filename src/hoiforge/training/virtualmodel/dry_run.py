"""``hoiforge train virtualmodel --dry-run``: both stages built on the meta device, their per-device memory plan.

Nothing is loaded: a ``pretrained`` config's networks are built from their published architectures
(hoiforge.training.architectures) with the sizes the config names; a ``random`` config's from its
own model configs. See training/core/memory.py for what is measured and what is added.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hoiforge.training import architectures as A
from hoiforge.training.core import ConfigError, plan_batch
from hoiforge.training.core.memory import StagePlan, stage_plan
from hoiforge.training.virtualmodel.components import SD_SCHEDULE, Components
from hoiforge.training.virtualmodel.config import VirtualModelConfig
from hoiforge.training.virtualmodel.model import VirtualModelBranches, predict_noise

TOKENS = 77


def _known(name: str | None, what: str, known: dict[str, dict]) -> dict:
    base = Path(str(name)).name.lower() if name else ""
    for key, arch in known.items():
        if key in base:
            return dict(arch)
    raise ConfigError(f"--dry-run knows the architecture of {', '.join(known)} for {what}, not {name!r}")


def meta_components(cfg: VirtualModelConfig) -> Components:
    """The config's UNet, VAE, text encoder and DINOv2 on the meta device (shapes only)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, Dinov2Config, Dinov2Model

    m = cfg.models
    if m.source == "random":
        unet_cfg, vae_cfg, text_cfg, dino_cfg = (
            m.unet,
            m.vae,
            {"vocab_size": 514, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1, **(m.text_encoder or {})},
            m.dino_config,
        )
    else:
        unet_cfg = _known(m.stable_diffusion, "models.stable_diffusion", {"stable-diffusion-v1-5": A.SD15_UNET})
        vae_cfg, text_cfg = A.SD15_VAE, A.SD15_TEXT
        dino_cfg = _known(m.dino, "models.dino", {"dinov2-base": A.DINOV2_BASE})
    with torch.device("meta"):
        return Components(
            unet=UNet2DConditionModel(**unet_cfg),
            vae=AutoencoderKL(**vae_cfg),
            text_encoder=CLIPTextModel(CLIPTextConfig(**text_cfg)),
            tokenizer=None,
            dino=Dinov2Model(Dinov2Config(**dino_cfg)),
            schedule=dict(SD_SCHEDULE),
            dino_image_size=m.dino_image_size,
        )


def weights_note(cfg: VirtualModelConfig) -> str:
    m = cfg.models
    if m.source == "random":
        return f"config {cfg.name!r} initialises every network at random (models.seed {m.seed}); no weights are read"
    return (
        f"pretrained weights NOT loaded (meta device): a real run reads Stable Diffusion from {m.stable_diffusion!r} and DINOv2 "
        f"from {m.dino!r} in the weights root or the Hugging Face cache (`hoiforge models fetch {m.stable_diffusion} {m.dino}`)"
    )


def stage_plans(cfg: VirtualModelConfig, world: int, stages: tuple[str, ...] = ("base", "branches")) -> list[StagePlan]:
    out = []
    for stage in stages:
        sc = getattr(cfg.training, stage)
        plan = plan_batch(sc.batch_size, world, sc.per_device_batch)
        comp = meta_components(cfg)
        b, side = plan.per_device_batch, cfg.data.resolution
        latent = side // (2 ** (len(comp.vae.config.block_out_channels) - 1))
        chunks = cfg.models.text_chunks
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(sc.mixed_precision, torch.float32)

        def meta(*shape, dtype=dtype):
            return torch.zeros(*shape, device="meta", dtype=dtype)

        text = lambda b=b, chunks=chunks, comp=comp: meta(b, chunks * TOKENS, comp.text_encoder.config.hidden_size)
        t = torch.zeros(b, device="meta", dtype=torch.long)
        frozen = {"vae": comp.vae, "text_encoder": comp.text_encoder, "dino": comp.dino}
        notes = ["VAE, text encoder and DINOv2 run without gradient (their transient peak is not counted)"]
        if stage == "base":
            comp.unet.requires_grad_(True)
            trainable = {"unet": comp.unet}

            def forward(comp=comp, b=b, latent=latent, t=t, text=text):
                return comp.unet(meta(b, 4, latent, latent), t, text()).sample
        else:
            with torch.device("meta"):
                branches = VirtualModelBranches(comp.unet, comp.branch_spec(cfg))
            branches.requires_grad_(True)
            trainable, frozen = {"branches": branches}, {**frozen, "unet": comp.unet}
            spec = comp.branch_spec(cfg)

            def forward(comp=comp, branches=branches, spec=spec, b=b, side=side, latent=latent, t=t, text=text):
                conds = {"pose": meta(b, 3, side, side), "edges": meta(b, 1, side, side), "view": meta(b, spec.view_tokens, spec.view_dim)}
                conds.update(obj=meta(b, 3, side, side), mask=meta(b, 1, side, side))
                return predict_noise(comp.unet, branches, meta(b, 4, latent, latent), t, text(), **conds)

        out.append(stage_plan(stage, plan, trainable, frozen, forward, sc.mixed_precision, sc.gradient_checkpointing, notes))
    return out
