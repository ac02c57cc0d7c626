"""CLIP score of generated images against their captions, with ``openai/clip-vit-base-patch16`` (the papers').

Definition (torchmetrics ``CLIPScore``): per pair, 100 * cos(E_image, E_text) of the projected
CLIP embeddings; the set's score is max(mean over pairs, 0), which is what ``CLIPScore.compute``
returns. Per-image scores are reported as 100 * max(cos, 0).

Captions longer than CLIP's 77 tokens (HoIHuman's detailed captions often are) are truncated;
``truncation`` says how:

- ``torchmetrics`` (default): as torchmetrics' CLIPScore does it, which the papers' setup used
  (its documentation's example is exactly ``openai/clip-vit-base-patch16``): the captions are
  tokenised with padding and the ids sliced to the first 77, so a long caption keeps its first
  76 text tokens and loses its end token (the hub config's ``eos_token_id`` = 2 makes
  transformers pool at the highest token id then).
- ``clip``: as OpenAI's ``clip.tokenize(truncate=True)`` (= the tokenizer's ``truncation=True``):
  75 text tokens and the end token.

The number of truncated captions is reported either way. Weights: ``model`` is a local folder or
a cached hub id; by default the ``clip-vit-base-patch16`` entry of the weights registry (its
folder, or the Hugging Face cache), never a download.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models.device import resolve_device
from hoiforge.models.weights.hf_local import resolve_model_dir

WEIGHTS_ENTRY = "clip-vit-base-patch16"
TRUNCATIONS = ("torchmetrics", "clip")


def resolve_clip(model: str | Path | None = None) -> Path:
    """The CLIP folder: ``model`` if given, else the registry entry (BackendUnavailable names the fetch command)."""
    if model:
        return resolve_model_dir(model, "CLIP score (--clip-model)")
    from hoiforge.models.weights.registry import resolve

    try:
        return resolve(WEIGHTS_ENTRY)
    except BackendUnavailable as e:
        raise BackendUnavailable(f"CLIP score: {e}") from None


@dataclass
class ClipScoreResult:
    score: float  # max(mean of 100 * cos, 0): torchmetrics' CLIPScore
    per_image: list[float] = field(repr=False)  # 100 * max(cos, 0), in input order
    n: int = 0
    n_truncated: int = 0  # captions longer than the text model's 77 positions
    truncation: str = "torchmetrics"
    model: str = ""


class ClipScorer:
    def __init__(
        self,
        model: str | Path | None = None,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        truncation: str = "torchmetrics",
    ):
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
        folder = resolve_clip(model)
        self.device = resolve_device(device)  # the one device policy; these metrics stay fp32 (FID is precision-sensitive)
        self.dtype = getattr(torch, dtype)
        self.model = CLIPModel.from_pretrained(folder, dtype=self.dtype).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.processor = AutoImageProcessor.from_pretrained(folder)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)
        self.batch_size, self.truncation, self.model_id = batch_size, truncation, str(model or folder)

    def tokenize(self, captions: list[str]):
        """(input_ids, attention_mask, how many captions were truncated)."""
        lengths = [len(ids) for ids in self.tokenizer(list(captions), verbose=False)["input_ids"]]
        n_truncated = sum(n > self.max_tokens for n in lengths)
        if self.truncation == "clip":
            tok = self.tokenizer(list(captions), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
            return tok["input_ids"], tok["attention_mask"], n_truncated
        tok = self.tokenizer(list(captions), padding=True, return_tensors="pt", verbose=False)
        return tok["input_ids"][:, : self.max_tokens], tok["attention_mask"][:, : self.max_tokens], n_truncated

    def cosines(self, images: list[np.ndarray], captions: list[str]) -> tuple[np.ndarray, int]:
        """(cos(E_image, E_text) per pair, captions truncated) for one batch."""
        import torch

        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images for {len(captions)} captions")
        ids, mask, n_truncated = self.tokenize(captions)
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            img = _embedding(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
            txt = _embedding(self.model.get_text_features(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)))
            img = torch.nn.functional.normalize(img.float(), dim=-1)
            txt = torch.nn.functional.normalize(txt.float(), dim=-1)
            return (img * txt).sum(-1).cpu().numpy().astype(np.float64), n_truncated


def _embedding(out):
    """get_*_features returns a tensor (transformers 4) or an output whose pooler_output is projected (5)."""
    return out if hasattr(out, "shape") else out.pooler_output


def clip_score(pairs: Iterable[tuple[np.ndarray, str]], scorer: ClipScorer) -> ClipScoreResult:
    """CLIP score over (RGB image, caption) pairs, streamed ``scorer.batch_size`` at a time."""
    cos: list[float] = []
    truncated = 0
    images: list[np.ndarray] = []
    captions: list[str] = []

    def flush() -> None:
        nonlocal truncated
        c, t = scorer.cosines(images, captions)
        cos.extend(c.tolist())
        truncated += t
        images.clear()
        captions.clear()

    for image, caption in pairs:
        images.append(image)
        captions.append(caption)
        if len(images) == scorer.batch_size:
            flush()
    if images:
        flush()
    scores = 100.0 * np.asarray(cos)
    mean = float(scores.mean()) if len(scores) else float("nan")
    return ClipScoreResult(
        score=max(mean, 0.0) if len(scores) else mean,
        per_image=np.maximum(scores, 0.0).tolist(),
        n=len(scores),
        n_truncated=truncated,
        truncation=scorer.truncation,
        model=scorer.model_id,
    )
