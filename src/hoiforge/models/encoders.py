"""The frozen encoders VirtualModel trains against, as precompute backends (diffusers, transformers).

- ``sd-vae`` (task ``vae-encoder``): the Stable Diffusion VAE (``AutoencoderKL``); latent mean x
  ``scaling_factor``, as diffusers' training examples compute x0.
- ``clip-text`` (task ``text-encoder``): SD's CLIP text encoder on captions of any length, in
  77-token chunks (models/text_encoding.py).
- ``dinov2`` (task ``image-encoder``): DINOv2's penultimate hidden states (every token, CLS
  included) of each close view, VirtualModel's C_v before its linear layer xi.

Weights come from a local directory or the Hugging Face cache (registry entries
``stable-diffusion-v1-5`` and ``dinov2-base``); nothing is downloaded. bf16/fp16 on GPU by the
device policy; outputs are returned as float16 numpy arrays, the dtype the members store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np

from hoiforge.datasets.precomputed import latent_image_size
from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.registry import Weights
from hoiforge.models.weights.hf_local import resolve_model_dir

INSTALL = "pip install 'hoiforge[train]' (diffusers, transformers, torch)"


def _part(model: str | None, subfolder: str | None, what: str) -> Path:
    """``subfolder`` of a Stable Diffusion folder (or the model folder itself) holding a config.json."""
    from hoiforge.errors import BackendUnavailable

    root = resolve_model_dir(model, what, marker=None)
    folder = root / subfolder if subfolder and (root / subfolder).is_dir() else root
    if not (folder / "config.json").is_file():
        raise BackendUnavailable(
            f"{what}: {root} holds no {subfolder + '/' if subfolder else ''}config.json (a Stable Diffusion folder or a model folder)"
        )
    return folder


class SDVaeEncoder:
    """encode(images) -> per image a float16 [4, H/8, W/8] latent of its 512-short-side resize."""

    name = "sd-vae"
    package = "diffusers"

    def __init__(
        self,
        model: Annotated[str | None, Weights("stable-diffusion-v1-5")] = None,
        subfolder: str | None = "vae",
        short_side: int = 512,
        device: str | None = None,
        dtype: Dtype | None = None,
        batch_size: int = 8,
    ):
        self.check(model=model, subfolder=subfolder)
        from diffusers import AutoencoderKL

        self.device, self.dtype = device_dtype(device, dtype)
        folder = _part(model, subfolder, "precompute vae sd-vae")
        self.vae = AutoencoderKL.from_pretrained(folder, torch_dtype=self.dtype).to(self.device).eval()
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.short_side, self.batch_size = short_side, batch_size
        self.model_id = str(model)

    @classmethod
    def check(cls, model: str | None = None, subfolder: str | None = "vae", **_) -> None:
        require("diffusers", INSTALL)
        require("torch", INSTALL)
        _part(model, subfolder, "precompute vae sd-vae")

    def encode(self, images: list[np.ndarray]) -> list[np.ndarray]:
        import cv2
        import torch

        resized = []
        for rgb in images:
            w, h = latent_image_size(rgb.shape[1], rgb.shape[0], self.short_side)
            resized.append(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if w < rgb.shape[1] else cv2.INTER_CUBIC))
        out: list[np.ndarray | None] = [None] * len(images)
        # Batch images of the same size (a batch is one tensor); e-commerce sets have few sizes.
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(resized):
            by_size.setdefault(r.shape[:2], []).append(i)
        with torch.inference_mode():
            for indices in by_size.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    x = torch.from_numpy(np.stack([resized[i] for i in chunk])).permute(0, 3, 1, 2)
                    x = (x.to(self.device, self.dtype) / 127.5) - 1.0
                    latents = self.vae.encode(x).latent_dist.mean * self.scaling_factor
                    for i, z in zip(chunk, latents.float().cpu().numpy(), strict=True):
                        out[i] = z.astype(np.float16)
        return out  # type: ignore[return-value]


class ClipTextEncoder:
    """encode(texts) -> per text a float16 [n_chunks * 77, hidden] CLIP last hidden state."""

    name = "clip-text"
    package = "transformers"

    def __init__(
        self,
        model: Annotated[str | None, Weights("stable-diffusion-v1-5")] = None,
        max_chunks: int | None = 3,
        device: str | None = None,
        dtype: Dtype | None = None,
    ):
        self.check(model=model)
        from hoiforge.models.text_encoding import LongPromptEncoder

        root = resolve_model_dir(model, "precompute text_encoder clip-text", marker=None)
        self.encoder = LongPromptEncoder.from_pretrained(root, device, dtype, max_chunks)
        self.model_id = str(model)

    @classmethod
    def check(cls, model: str | None = None, **_) -> None:
        require("transformers", INSTALL)
        require("torch", INSTALL)
        _part(model, "text_encoder", "precompute text_encoder clip-text")

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        # Captions differ in length: encode together those with the same number of chunks, so
        # each caption keeps its own length rather than the longest one's padding.
        chunks = [len(self.encoder.token_chunks([t])[0]) for t in texts]
        out: list[np.ndarray | None] = [None] * len(texts)
        for n in sorted(set(chunks)):
            indices = [i for i, c in enumerate(chunks) if c == n]
            hidden = self.encoder.encode([texts[i] for i in indices]).float().cpu().numpy()
            for i, h in zip(indices, hidden, strict=True):
                out[i] = h.astype(np.float16)
        return out  # type: ignore[return-value]


class Dinov2Encoder:
    """encode(tiles) -> float16 [n, tokens, hidden]: DINOv2 hidden states of layer ``layer`` (penultimate)."""

    name = "dinov2"
    package = "transformers"

    def __init__(
        self,
        model: Annotated[str | None, Weights("dinov2-base")] = None,
        size: int = 224,
        layer: int = -2,
        device: str | None = None,
        dtype: Dtype | None = None,
        batch_size: int = 32,
    ):
        self.check(model=model)
        import json

        from transformers import Dinov2Model

        folder = resolve_model_dir(model, "precompute image_encoder dinov2")
        self.device, self.dtype = device_dtype(device, dtype)
        self.model = Dinov2Model.from_pretrained(folder, dtype=self.dtype).to(self.device).eval()
        # The processor's normalisation, without its resize-256 + centre-crop-224: a close view is
        # already a square around the product, and cropping would cut the product's edges.
        pre = folder / "preprocessor_config.json"
        cfg = json.loads(pre.read_text()) if pre.is_file() else {}
        self.mean = np.asarray(cfg.get("image_mean", [0.485, 0.456, 0.406]), np.float32)
        self.std = np.asarray(cfg.get("image_std", [0.229, 0.224, 0.225]), np.float32)
        self.size, self.layer, self.batch_size = size, layer, batch_size
        self.model_id = str(model)

    @classmethod
    def check(cls, model: str | None = None, **_) -> None:
        require("transformers", INSTALL)
        require("torch", INSTALL)
        resolve_model_dir(model, "precompute image_encoder dinov2")

    def encode(self, tiles: list[np.ndarray]) -> np.ndarray:
        import cv2
        import torch

        if not tiles:
            hidden = self.model.config.hidden_size
            return np.zeros((0, 0, hidden), np.float16)
        pixels = np.stack([cv2.resize(t, (self.size, self.size), interpolation=cv2.INTER_AREA) for t in tiles]).astype(np.float32) / 255
        pixels = (pixels - self.mean) / self.std
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        outs = []
        with torch.inference_mode():
            for start in range(0, len(x), self.batch_size):
                batch = x[start : start + self.batch_size].to(self.device, self.dtype)
                hidden = self.model(pixel_values=batch, output_hidden_states=True).hidden_states[self.layer]
                outs.append(hidden.float().cpu().numpy())
        return np.concatenate(outs).astype(np.float16)
