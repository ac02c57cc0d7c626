"""LAION improved aesthetic predictor: an MLP on L2-normalised CLIP ViT-L/14 image embeddings.

The paper-grade aesthetic score (HoIHuman keeps rating >= 6). Weights, both local (nothing is
downloaded):

- CLIP: a transformers CLIP checkpoint directory (or cached hub id), e.g. ``openai/clip-vit-large-patch14``;
  only its vision tower and projection are loaded (CLIPVisionModelWithProjection), whose
  ``image_embeds`` are OpenAI CLIP's ``encode_image`` output that the MLP was trained on.
- MLP: ``sac+logos+ava1-l14-linearMSE.pth`` from github.com/christophschuhmann/improved-aesthetic-predictor
  (a plain state dict, read with ``torch.load(weights_only=True)``), or the same tensors as ``.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.registry import Weights
from hoiforge.models.weights.hf_local import resolve_file, resolve_model_dir

TORCH_HINT = "pip install torch transformers (the paper-grade backends need them)"

# layers.<i> of the published nn.Sequential; the other indices are dropouts (no weights).
MLP_LINEAR_LAYERS = {0: (768, 1024), 2: (1024, 128), 4: (128, 64), 6: (64, 16), 7: (16, 1)}


def build_aesthetic_mlp(input_size: int = 768):
    """The predictor's MLP with the published layout (dropouts at 1, 3, 5; inert in eval)."""
    from torch import nn

    class AestheticMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input_size = input_size
            self.layers = nn.Sequential(
                nn.Linear(input_size, 1024),
                nn.Dropout(0.2),
                nn.Linear(1024, 128),
                nn.Dropout(0.2),
                nn.Linear(128, 64),
                nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, x):
            return self.layers(x)

    return AestheticMLP()


def load_aesthetic_mlp(path: str | Path):
    """The MLP with weights from ``path`` (.pth/.pt state dict or .safetensors); strict layout check."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    expected = {f"layers.{i}.{p}" for i in MLP_LINEAR_LAYERS for p in ("weight", "bias")}
    if set(state) != expected:
        raise BackendUnavailable(
            f"{path}: not a LAION aesthetic MLP state dict (missing {sorted(expected - set(state))}, "
            f"unexpected {sorted(set(state) - expected)[:5]})"
        )
    mlp = build_aesthetic_mlp(input_size=state["layers.0.weight"].shape[1])
    mlp.load_state_dict(state, strict=True)
    return mlp.eval()


class LaionAestheticScorer:
    """score(images) -> LAION aesthetic rating per image (roughly 1-10), batched."""

    package = "transformers"

    name = "laion-aesthetic"

    def __init__(
        self,
        clip_model: Annotated[str | None, Weights("clip-vit-large-patch14")] = None,
        mlp_weights: Annotated[str | None, Weights("laion-aesthetic-mlp", "sac+logos+ava1-l14-linearMSE.safetensors")] = None,
        device: str | None = None,
        dtype: Dtype | None = None,
    ):
        self.check(clip_model=clip_model, mlp_weights=mlp_weights)
        from transformers import AutoConfig, AutoImageProcessor, CLIPVisionModelWithProjection

        clip_dir = resolve_model_dir(clip_model, "laion-aesthetic CLIP (options.clip_model)")
        self.device, self.dtype = device_dtype(device, dtype)
        self.processor = AutoImageProcessor.from_pretrained(clip_dir)
        config = AutoConfig.from_pretrained(clip_dir)
        if hasattr(config, "vision_config"):  # a full CLIP checkpoint: its projection size lives at the top
            vision = config.vision_config
            vision.projection_dim = config.projection_dim
            config = vision
        # The text tower's weights in the checkpoint are skipped on purpose (transformers lists them as unexpected).
        self.clip = CLIPVisionModelWithProjection.from_pretrained(clip_dir, config=config, dtype=self.dtype).to(self.device).eval()
        self.mlp = load_aesthetic_mlp(resolve_file(mlp_weights, "quality scorer laion-aesthetic", "mlp_weights")).to(
            self.device
        )  # fp32: tiny
        if self.mlp.input_size != self.clip.config.projection_dim:
            raise BackendUnavailable(
                f"laion-aesthetic: MLP expects {self.mlp.input_size}-d embeddings but CLIP {clip_dir} projects to "
                f"{self.clip.config.projection_dim} (the predictor was trained on CLIP ViT-L/14)"
            )
        self.model_id = str(clip_model)

    @classmethod
    def check(cls, clip_model: str | None = None, mlp_weights: str | None = None, **_) -> None:
        require("torch", TORCH_HINT)
        require("transformers", TORCH_HINT)
        resolve_model_dir(clip_model, "laion-aesthetic CLIP (options.clip_model)")
        resolve_file(mlp_weights, "quality scorer laion-aesthetic", "mlp_weights")

    def embed(self, images: list[np.ndarray]):
        """L2-normalised CLIP image embeddings, float32 (N, projection_dim)."""
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt")
        with torch.inference_mode():
            pixels = inputs["pixel_values"].to(self.device, self.dtype)
            emb = self.clip(pixel_values=pixels).image_embeds.float()
        return torch.nn.functional.normalize(emb, dim=-1)

    def score(self, images: list[np.ndarray]) -> list[float]:
        import torch

        emb = self.embed(images)
        with torch.inference_mode():
            return [float(v) for v in self.mlp(emb).squeeze(-1).cpu()]
