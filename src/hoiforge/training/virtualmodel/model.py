"""VirtualModel (§3.3, supp. §10): a Stable Diffusion UNet plus two lightweight UNets, the Identity
Branch (IB) and the Content Branch (CB), each with 40 % of the base UNet's channels.

- IB: pose p and edges e through separate expert blocks (ControlNet's conditioning-embedding shape,
  seven 3x3 convs [16,16,32,32,96,96,256] then a zero conv to the branch width), summed; DINOv2
  features of the close view v through a linear layer xi into a second cross-attention that runs
  beside the text one in the IB's input layers: f = CA1(f, C_te) + CA2(f, xi(C_v)).
- CB: the object pixels o through the same 7-conv block, the mask m through a 3-conv block
  [32,32,1] (stride 2 each, to latent size), merged by a Hadamard product.
- Each branch adds the base UNet's input-layer features F_H onto its own input layers, "encoded
  using 3x3 convolution layers initialized with zeros" (supp. §10), and its features F_IB / F_CB
  are "added on the input to each transformer block in output_blocks" of the base UNet through
  zero-initialised 3x3 convs: read at the same place in the branch (the input of its own k-th
  output transformer block), added to the base's k-th. The output layers without attention (the
  lowest up level of SD1.5) get nothing. Untrained branches leave the base UNet's output unchanged.

``VirtualModelBranches`` is the one trainable module of stage 2; ``predict_noise`` runs the frozen
base encoder, the branches and the base decoder with the branch features added (see unet_walk).
Ablations (Table 4): ``identity_branch=False`` (w/o IB), ``content_branch=False`` (w/o CB),
``close_view=False`` (w/o C_v: the IB keeps only the text cross-attention).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from hoiforge.training.virtualmodel import unet_walk


@dataclass(frozen=True)
class BranchSpec:
    channel_fraction: float = 0.4
    identity_branch: bool = True
    content_branch: bool = True
    close_view: bool = True
    expert_channels: tuple[int, ...] = (16, 32, 96, 256)  # ControlNet's: convs 16,16,32,32,96,96,256
    mask_channels: tuple[int, ...] = (32, 32, 1)
    view_dim: int = 768  # DINOv2 hidden size
    view_tokens: int = 257  # DINOv2 tokens of one close view (CLS + patches)


def branch_channels(channels: tuple[int, ...], fraction: float, groups: int) -> tuple[int, ...]:
    """``fraction`` of each width, rounded to a multiple of the norm group count (at least one group)."""
    return tuple(max(groups, round(c * fraction / groups) * groups) for c in channels)


class DualCrossAttnProcessor(nn.Module):
    """attn2 of the IB's input layers: CA1 on the text tokens plus a parallel CA2 on the close-view tokens.

    The encoder states arrive as [text tokens; xi(C_v) tokens] (the last ``view_tokens`` are the
    view), so the UNet blocks pass them through unchanged and the processor stays stateless
    (safe under gradient checkpointing, which re-runs it).
    """

    def __init__(self, query_dim: int, cross_dim: int, heads: int, view_tokens: int):
        super().__init__()
        from diffusers.models.attention_processor import Attention, AttnProcessor2_0

        self.view_tokens = view_tokens
        self.text_attention = AttnProcessor2_0()
        self.ca2 = Attention(query_dim=query_dim, cross_attention_dim=cross_dim, heads=heads, dim_head=query_dim // heads, out_bias=True)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        text, view = encoder_hidden_states[:, : -self.view_tokens], encoder_hidden_states[:, -self.view_tokens :]
        out = self.text_attention(attn, hidden_states, text, attention_mask, temb)
        return out + self.ca2(hidden_states, encoder_hidden_states=view)


class MaskBlock(nn.Module):
    """The CB's mask block: 3x3 convs [32, 32, 1], stride 2 each (image size -> latent size)."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        ins = (1, *channels[:-1])
        self.convs = nn.ModuleList(nn.Conv2d(i, o, kernel_size=3, padding=1, stride=2) for i, o in zip(ins, channels, strict=True))

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        h = mask
        for k, conv in enumerate(self.convs):
            h = conv(h)
            if k < len(self.convs) - 1:
                h = nn.functional.silu(h)
        return h


class _Unread(nn.Module):
    """Stands in for a branch's last output transformer block: the branch hands over that block's INPUT
    (F_k), so its output is never read; a real block there would hold parameters with no gradient (DDP fails)."""

    def forward(self, hidden_states, *args, **kwargs):
        return (hidden_states,)


class Branch(nn.Module):
    """One lightweight UNet (diffusers blocks at a fraction of the base width) with its input projections and zero convs."""

    def __init__(self, base_unet, fraction: float, view_tokens: int | None = None, view_dim: int | None = None):
        super().__init__()
        from diffusers import UNet2DConditionModel

        cfg = dict(base_unet.config)
        groups = cfg["norm_num_groups"]
        cfg["block_out_channels"] = list(branch_channels(tuple(cfg["block_out_channels"]), fraction, groups))
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        self.unet = UNet2DConditionModel.from_config(cfg)
        # The decoder's head is never used: the branch hands its output layers to the base UNet.
        self.unet.conv_norm_out = self.unet.conv_act = self.unet.conv_out = None
        unet_walk.check_supported(self.unet)
        last = self.unet.up_blocks[-1]
        if not getattr(last, "attentions", None):
            raise ValueError("VirtualModel's branches need a UNet whose last up block has attention (the SD 1.x/2.x layout)")
        last.attentions[-1] = _Unread()

        base_in, own_in = unet_walk.input_channels(base_unet), unet_walk.input_channels(self.unet)
        base_out, own_out = unet_walk.output_attention_channels(base_unet), unet_walk.output_attention_channels(self.unet)
        self.from_base = nn.ModuleList(nn.Conv2d(b, o, kernel_size=3, padding=1) for b, o in zip(base_in, own_in, strict=True))
        self.zero_convs = nn.ModuleList(nn.Conv2d(o, b, kernel_size=3, padding=1) for o, b in zip(own_out, base_out, strict=True))
        for conv in (*self.from_base, *self.zero_convs):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

        self.view_tokens = view_tokens
        if view_tokens:
            cross = cfg["cross_attention_dim"]
            self.xi = nn.Linear(view_dim, cross)
            for block in self.unet.down_blocks:
                for transformer in getattr(block, "attentions", None) or []:
                    for tb in transformer.transformer_blocks:
                        tb.attn2.set_processor(DualCrossAttnProcessor(tb.attn2.inner_dim, cross, tb.attn2.heads, view_tokens))

    @property
    def width(self) -> int:
        return self.unet.config.block_out_channels[0]

    def forward(self, x_t, timestep, text, base_feats, condition, view=None) -> list[torch.Tensor]:
        """Zero-conv features for the input of each transformer block of the base UNet's output layers."""
        u = self.unet
        emb = unet_walk.time_embedding(u, x_t, timestep)
        down_text = text
        if self.view_tokens:
            down_text = torch.cat([text, self.xi(view).to(text.dtype)], dim=1)

        def add_base(i, h):
            h = h + self.from_base[i](base_feats[i].to(h.dtype))
            return h + condition.to(h.dtype) if i == 0 else h

        h, feats = unet_walk.down_layers(u, x_t, emb, down_text, after=add_base)
        h = unet_walk.mid_layer(u, h, emb, text)
        outs: list[torch.Tensor] = []

        def collect(k, h):
            outs.append(self.zero_convs[k](h))
            return h

        unet_walk.up_layers(u, h, feats, emb, text, unet_walk.upsample_sizes(u, feats), before_attention=collect)
        return outs


class VirtualModelBranches(nn.Module):
    """IB + CB with their condition blocks: the trainable part of stage 2."""

    def __init__(self, base_unet, spec: BranchSpec):
        super().__init__()
        from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding

        unet_walk.check_supported(base_unet)
        if not (spec.identity_branch or spec.content_branch):
            raise ValueError("VirtualModel needs at least one of the identity and content branches")
        self.spec = spec
        self.ib = self.cb = None
        if spec.identity_branch:
            view_tokens = spec.view_tokens if spec.close_view else None
            self.ib = Branch(base_unet, spec.channel_fraction, view_tokens, spec.view_dim)
            self.pose_expert = ControlNetConditioningEmbedding(self.ib.width, 3, spec.expert_channels)
            self.edge_expert = ControlNetConditioningEmbedding(self.ib.width, 1, spec.expert_channels)
        if spec.content_branch:
            self.cb = Branch(base_unet, spec.channel_fraction)
            self.object_block = ControlNetConditioningEmbedding(self.cb.width, 3, spec.expert_channels)
            self.mask_block = MaskBlock(spec.mask_channels)

    def enable_gradient_checkpointing(self) -> None:
        for branch in (self.ib, self.cb):
            if branch is not None:
                branch.unet.enable_gradient_checkpointing()

    def forward(self, x_t, timestep, text, base_feats, pose=None, edges=None, view=None, obj=None, mask=None) -> list[torch.Tensor]:
        """Sum of both branches' additions to the inputs of the base's output transformer blocks."""
        adds = None
        if self.ib is not None:
            condition = self.pose_expert(pose) + self.edge_expert(edges)
            adds = self.ib(x_t, timestep, text, base_feats, condition, view if self.spec.close_view else None)
        if self.cb is not None:
            condition = self.object_block(obj) * self.mask_block(mask)
            more = self.cb(x_t, timestep, text, base_feats, condition)
            adds = more if adds is None else [a + b for a, b in zip(adds, more, strict=True)]
        return adds


def predict_noise(unet, branches: VirtualModelBranches | None, x_t, timestep, text, **conditions) -> torch.Tensor:
    """The full VirtualModel: frozen base encoder, branches, base decoder with the branch features added."""
    with torch.no_grad():  # the base is frozen in stage 2: its encoder features need no gradient
        enc = unet_walk.encode(unet, x_t, timestep, text)
    adds = None if branches is None else branches(x_t, timestep, text, enc.feats, **conditions)
    return unet_walk.decode(unet, enc, text, adds)


def clone_unet_config(unet) -> dict:
    return copy.deepcopy({k: v for k, v in dict(unet.config).items() if not k.startswith("_")})
