"""Run a diffusers ``UNet2DConditionModel`` layer by layer, so features can be read and added per layer.

diffusers' UNet accepts extra residuals for its down and mid blocks only; VirtualModel also adds
branch features to the output (up) layers. Instead of forking diffusers or hooking modules (hooks
re-run under gradient checkpointing), this walks the UNet's own blocks in the order its
``forward`` does, with a callback after every layer. A "layer" is what the original LDM code
calls an input/output block: input layers are ``conv_in``, each (resnet, attention) pair and each
downsampler (the residuals diffusers' down blocks return); output layers are each (resnet,
attention) pair of the up blocks, the last pair of a level including its upsampler. SD1.5 has 12
of each, 9 of its output layers with a transformer block (the lowest up level has none). Up
layers take a second callback, ``before_attention(k, h)``, on the input of the k-th transformer
block of the output layers: where VirtualModel adds its branches (supp. §10). With no callback,
``encode`` + ``decode`` give exactly ``unet(sample, t, text).sample`` (tested bit for bit).

Supported: the Stable Diffusion 1.x/2.x layout (CrossAttn/plain down and up blocks, a
cross-attention mid block, no class or added embeddings, no attention masks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

LayerFn = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass
class Encoded:
    emb: torch.Tensor  # time embedding
    feats: list[torch.Tensor]  # input-layer outputs (skip connections), conv_in first
    mid: torch.Tensor  # mid block output
    upsample_sizes: list  # per up block, what diffusers passes as upsample_size


def check_supported(unet) -> None:
    c = unet.config
    unsupported = {
        "class_embed_type": c.class_embed_type,
        "addition_embed_type": c.addition_embed_type,
        "encoder_hid_dim_type": c.encoder_hid_dim_type,
        "time_cond_proj_dim": c.time_cond_proj_dim,
    }
    bad = {k: v for k, v in unsupported.items() if v is not None}
    if bad or c.center_input_sample or unet.mid_block is None:
        raise ValueError(f"VirtualModel wraps Stable Diffusion 1.x/2.x UNets; this one sets {bad or 'center_input_sample/no mid block'}")


def input_channels(unet) -> list[int]:
    """Channels of each input layer's output (conv_in first)."""
    out = [unet.config.block_out_channels[0]]
    for block, ch in zip(unet.down_blocks, unet.config.block_out_channels, strict=True):
        out += [ch] * (len(block.resnets) + (1 if block.downsamplers is not None else 0))
    return out


def output_channels(unet) -> list[int]:
    """Channels of each output layer's output."""
    out = []
    for block, ch in zip(unet.up_blocks, reversed(unet.config.block_out_channels), strict=True):
        out += [ch] * len(block.resnets)
    return out


def output_attention_channels(unet) -> list[int]:
    """Channels at the input of each transformer block of the output layers (SD1.5: 9)."""
    out = []
    for block, ch in zip(unet.up_blocks, reversed(unet.config.block_out_channels), strict=True):
        if getattr(block, "attentions", None):
            out += [ch] * len(block.resnets)
    return out


def time_embedding(unet, sample: torch.Tensor, timestep) -> torch.Tensor:
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    return emb


def _resnet(block, resnet, h, emb):
    if torch.is_grad_enabled() and block.gradient_checkpointing:
        return block._gradient_checkpointing_func(resnet, h, emb)
    return resnet(h, emb)


def _attend(attn, h, text):
    return attn(h, encoder_hidden_states=text, return_dict=False)[0]


def down_layers(unet, sample: torch.Tensor, emb: torch.Tensor, text: torch.Tensor, after: LayerFn | None = None):
    """(h after the last down block, input-layer outputs); ``after(i, h)`` may replace layer i's output."""
    after = after or (lambda i, h: h)
    h = after(0, unet.conv_in(sample))
    feats, i = [h], 1
    for block in unet.down_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for resnet, attn in zip(block.resnets, attentions, strict=True):
            h = _resnet(block, resnet, h, emb)
            if attn is not None:
                h = _attend(attn, h, text)
            h = after(i, h)
            feats.append(h)
            i += 1
        if block.downsamplers is not None:
            for downsampler in block.downsamplers:
                h = downsampler(h)
            h = after(i, h)
            feats.append(h)
            i += 1
    return h, feats


def mid_layer(unet, h: torch.Tensor, emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    return unet.mid_block(h, emb, encoder_hidden_states=text)


def upsample_sizes(unet, feats: list[torch.Tensor]) -> list:
    """diffusers' ``upsample_size`` per up block: None unless the sample is not a multiple of the overall factor."""
    factor = 2**unet.num_upsamplers
    forward_size = any(d % factor for d in feats[0].shape[-2:])
    sizes, remaining = [], len(feats)
    for i, block in enumerate(unet.up_blocks):
        remaining -= len(block.resnets)
        last = i == len(unet.up_blocks) - 1
        sizes.append(feats[remaining - 1].shape[2:] if (forward_size and not last) else None)
    return sizes


def up_layers(
    unet,
    h: torch.Tensor,
    feats: list[torch.Tensor],
    emb,
    text,
    sizes: list,
    after: LayerFn | None = None,
    before_attention: LayerFn | None = None,
) -> torch.Tensor:
    """The decoder: output layers in order, ``after(j, h)`` may replace output layer j's result and
    ``before_attention(k, h)`` the input of its k-th transformer block."""
    after = after or (lambda j, h: h)
    before_attention = before_attention or (lambda k, h: h)
    skips, j, k_attn = list(feats), 0, 0
    for block, size in zip(unet.up_blocks, sizes, strict=True):
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        n = len(block.resnets)
        for k, (resnet, attn) in enumerate(zip(block.resnets, attentions, strict=True)):
            h = torch.cat([h, skips.pop()], dim=1)
            h = _resnet(block, resnet, h, emb)
            if attn is not None:
                h = _attend(attn, before_attention(k_attn, h), text)
                k_attn += 1
            if k == n - 1 and block.upsamplers is not None:
                for upsampler in block.upsamplers:
                    h = upsampler(h, size)
            h = after(j, h)
            j += 1
    return h


def out_layer(unet, h: torch.Tensor) -> torch.Tensor:
    if unet.conv_norm_out is not None:
        h = unet.conv_act(unet.conv_norm_out(h))
    return unet.conv_out(h)


def encode(unet, sample: torch.Tensor, timestep, text: torch.Tensor) -> Encoded:
    """The base UNet's encoder half: time embedding, input layers, mid block."""
    emb = time_embedding(unet, sample, timestep)
    h, feats = down_layers(unet, sample, emb, text)
    mid = mid_layer(unet, h, emb, text)
    return Encoded(emb=emb, feats=feats, mid=mid, upsample_sizes=upsample_sizes(unet, feats))


def decode(unet, enc: Encoded, text: torch.Tensor, adds: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The decoder half, ``adds[k]`` added on the input of the k-th transformer block of the output layers
    (the branches' zero-conv features)."""
    before = None if adds is None else (lambda k, h: h + adds[k])
    h = up_layers(unet, enc.mid, enc.feats, enc.emb, text, enc.upsample_sizes, before_attention=before)
    return out_layer(unet, h)
