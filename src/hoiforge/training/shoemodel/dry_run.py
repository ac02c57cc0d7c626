"""``hoiforge train shoemodel --module M --dry-run``: the module built on the meta device, its per-device memory plan.

Nothing is loaded: a pretrained network is built from its published architecture
(hoiforge.training.architectures); see training/core/memory.py for what is measured and what is added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hoiforge.training import architectures as A
from hoiforge.training.core import ConfigError, plan_batch
from hoiforge.training.core.memory import StagePlan, stage_plan
from hoiforge.training.shoemodel.config import ShoeModelConfig

SOURCES = {"wd": "pretrained", "lps1": "pretrained", "lps2": None, "sw": "base_model"}


def _known(name: str, what: str, key: str, arch: dict[str, Any]) -> dict[str, Any]:
    if key not in Path(name).name.lower():
        raise ConfigError(f"--dry-run knows the architecture of {key} for {what}, not {name!r}")
    return dict(arch)


def weights_note(cfg: ShoeModelConfig, module: str) -> str:
    field = SOURCES[module]
    name = getattr(getattr(cfg, module), field) if field else None
    if not name:
        return f"{module} starts at random (no pretrained weights in this config)"
    return (
        f"pretrained weights NOT loaded (meta device): a real run reads {module}.{field} = {name!r} "
        "from a local folder, the weights root or the Hugging Face cache"
    )


def build_meta(cfg: ShoeModelConfig, module: str) -> tuple[dict[str, torch.nn.Module], dict[str, torch.nn.Module]]:
    """(trainable, frozen) modules of ``module`` on the meta device, at the config's sizes."""
    from hoiforge.training.shoemodel import lps1, lps2, sw, wd

    with torch.device("meta"):
        if module == "wd":
            c = cfg.wd
            if c.pretrained:
                c = c.model_copy(update={"pretrained": None, "architecture": _known(c.pretrained, "wd.pretrained", "mit-b5", A.MIT_B5)})
            return {"wd": wd.build(c)}, {}
        if module == "lps1":
            c = cfg.lps1
            if c.pretrained:
                arch = _known(c.pretrained, "lps1.pretrained", "vitpose-base", A.VITPOSE_BASE)
                c = c.model_copy(update={"pretrained": None, "architecture": arch})
            return {"lps1": lps1.build(c)}, {}
        if module == "lps2":
            return {"lps2": lps2.build(cfg.lps2)}, {}
        c = cfg.sw
        if c.base_model:
            from diffusers import AutoencoderKL, UNet2DConditionModel
            from transformers import CLIPTextConfig, CLIPTextModel

            unet_cfg = _known(c.base_model, "sw.base_model", "stable-diffusion-v1-5", A.SD15_UNET)
            base = {"unet": UNet2DConditionModel(**unet_cfg), "vae": AutoencoderKL(**A.SD15_VAE)}
            base["text_encoder"] = CLIPTextModel(CLIPTextConfig(**A.SD15_TEXT))
        else:
            base = {k: v for k, v in sw.tiny_base(c.tiny_base).items() if k in ("unet", "vae", "text_encoder")}
        controlnet = sw.controlnet_from_unet(base["unet"], base["vae"])
    return {"controlnet": controlnet}, base


def _forward(cfg: ShoeModelConfig, module: str, trainable, frozen, b: int, dtype):
    def meta(*shape, dt=dtype):
        return torch.zeros(*shape, device="meta", dtype=dt)

    if module == "wd":
        s = cfg.wd.size
        return lambda: trainable["wd"](pixel_values=meta(b, 3, s, s), labels=meta(b, s, s, dt=torch.long)).loss
    if module == "lps1":
        s = cfg.lps1.size
        return lambda: trainable["lps1"](pixel_values=meta(b, 3, s, s)).heatmaps
    if module == "lps2":
        from hoiforge.training.shoemodel.lps2 import N_COND, N_TARGET

        t = torch.zeros(b, device="meta", dtype=torch.long)
        return lambda: trainable["lps2"](meta(b, N_TARGET * 2), t, meta(b, N_COND * 2), meta(b, N_COND))
    unet, controlnet = frozen["unet"], trainable["controlnet"]
    r = cfg.sw.resolution
    latent = r // 2 ** (len(frozen["vae"].config.block_out_channels) - 1)
    hidden = frozen["text_encoder"].config.hidden_size
    t = torch.zeros(b, device="meta", dtype=torch.long)

    def forward():
        from hoiforge.training.shoemodel.sw import MAX_TEXT_CHUNKS

        noisy, text = meta(b, 4, latent, latent), meta(b, MAX_TEXT_CHUNKS * 77, hidden)
        down, mid = controlnet(noisy, t, encoder_hidden_states=text, controlnet_cond=meta(b, 6, r, r), return_dict=False)
        return unet(noisy, t, encoder_hidden_states=text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample

    return forward


def module_plan(cfg: ShoeModelConfig, module: str, world: int) -> StagePlan:
    s = getattr(cfg, module).train
    plan = plan_batch(s.batch_size, world, s.per_device_batch)
    trainable, frozen = build_meta(cfg, module)
    for m in trainable.values():
        m.requires_grad_(True)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(s.mixed_precision, torch.float32)
    forward = _forward(cfg, module, trainable, frozen, plan.per_device_batch, dtype)
    notes = ["the VAE and text encoder run without gradient (their transient peak is not counted)"] if module == "sw" else []
    return stage_plan(module, plan, trainable, frozen, forward, s.mixed_precision, s.gradient_checkpointing, notes)
