"""Conditions for the UNets: text, latents and close-view features (precomputed or encoded here), and CFG dropout."""

from __future__ import annotations

import torch

from hoiforge.datasets.text_encoding import CLIP_CONTEXT, chunk_token_ids

# The conditions dropped independently for classifier-free guidance (the object o and its mask m go together: the CB's input).
CONDITIONS = ("text", "pose", "edges", "view", "object")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def condition_keep(batch: int, p: float, device=None) -> dict[str, torch.Tensor]:
    """Per condition, a (batch,) bool tensor: True keeps it, False drops it (probability ``p``, independently)."""
    draws = torch.rand(batch, len(CONDITIONS), device=device)
    return {name: draws[:, i] >= p for i, name in enumerate(CONDITIONS)}


def _keep(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return x * keep.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)


class TextEncoder:
    """CLIP hidden states of captions in exactly ``chunks`` 77-token chunks (longer captions are cut)."""

    def __init__(self, tokenizer, text_encoder, chunks: int):
        self.tokenizer, self.model, self.chunks = tokenizer, text_encoder, chunks
        self._empty: torch.Tensor | None = None

    def _ids(self, captions: list[str]) -> torch.Tensor:
        t = self.tokenizer
        pad = t.pad_token_id if t.pad_token_id is not None else t.eos_token_id
        ids = t(list(captions), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        rows = [c for i in ids for c in chunk_token_ids(i, t.bos_token_id, t.eos_token_id, pad, n_chunks=self.chunks)]
        return torch.tensor(rows, device=self.model.device)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> torch.Tensor:
        hidden = self.model(input_ids=self._ids(captions)).last_hidden_state
        return hidden.reshape(len(captions), self.chunks * CLIP_CONTEXT, hidden.shape[-1])

    def empty(self) -> torch.Tensor:
        """(chunks*77, d): the empty prompt (CFG's unconditional text, and the padding of shorter precomputed captions)."""
        if self._empty is None:
            self._empty = self.encode([""])[0]
        return self._empty

    def fit(self, precomputed: list[torch.Tensor]) -> torch.Tensor:
        """Precomputed ``text.npy`` arrays cut or padded (with empty chunks) to ``chunks`` chunks, stacked."""
        n = self.chunks * CLIP_CONTEXT
        empty = self.empty()
        rows = []
        for t in precomputed:
            t = t.to(empty.device, empty.dtype)[:n]
            rows.append(torch.cat([t, empty[t.shape[0] :]]) if t.shape[0] < n else t)
        return torch.stack(rows)


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, sample: bool = True) -> torch.Tensor:
    dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    scale = float(getattr(vae.config, "scaling_factor", 0.18215))
    return (dist.sample() if sample else dist.mean) * scale


@torch.no_grad()
def encode_views(dino, views: torch.Tensor, size: int) -> torch.Tensor:
    """DINOv2 penultimate-layer hidden states (all tokens) of close views in [0, 1] (B, 3, h, w)."""
    views = views.to(dino.device, torch.float32)
    if views.shape[-1] != size or views.shape[-2] != size:
        views = torch.nn.functional.interpolate(views, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=views.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=views.device).view(1, 3, 1, 1)
    out = dino(pixel_values=((views - mean) / std).to(dino.dtype), output_hidden_states=True)
    return out.hidden_states[-2]


def branch_conditions(batch: dict, views: torch.Tensor | None, keep: dict[str, torch.Tensor] | None, dtype) -> dict[str, torch.Tensor]:
    """The branches' inputs from a loader batch (and encoded views), each zeroed where ``keep`` drops it."""
    conds = {"pose": batch.get("pose"), "edges": batch.get("edges"), "view": views, "obj": batch.get("object"), "mask": batch.get("mask")}
    conds = {k: v for k, v in conds.items() if v is not None}  # an ablated branch's inputs are absent
    if keep is not None:
        which = {"pose": "pose", "edges": "edges", "view": "view", "obj": "object", "mask": "object"}
        conds = {k: _keep(v, keep[which[k]]) for k, v in conds.items()}
    return {k: v.to(dtype) for k, v in conds.items()}
