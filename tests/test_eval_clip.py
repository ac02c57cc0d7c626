"""CLIP score through the real loading path, with a tiny CLIP built from a config and saved to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hoiforge.errors import BackendUnavailable
from hoiforge.metrics.clip_score import ClipScorer, clip_score, resolve_clip
from tests.eval_helpers import build_tiny_clip

DATA = Path(__file__).parent / "data"
SHORT = ["an astronaut holding a helmet", "basketball players on a court"]
LONG = "a cup of coffee on a saucer with a spoon, on a wooden table, photographed from above in warm light, " * 2  # > 77 tokens


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def images():
    return [np.asarray(Image.open(DATA / n).convert("RGB")) for n in ("astronaut.png", "basketball1.png", "coffee.png")]


def reference_cosines(folder: Path, images, captions, truncate: str) -> np.ndarray:
    """Independent path: the full CLIPModel forward (logits_per_image / logit_scale) on ids built here."""
    from transformers import AutoTokenizer, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    model, tok = CLIPModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    ids = []
    for c in captions:
        body = tok(c, add_special_tokens=False)["input_ids"]
        if truncate == "clip":
            ids.append([tok.bos_token_id, *body[:75], tok.eos_token_id])
        else:  # torchmetrics: the first 77 of [bos, body..., eos]
            ids.append([tok.bos_token_id, *body, tok.eos_token_id][:77])
    width = max(map(len, ids))
    input_ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    pixels = CLIPImageProcessorPil()(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixels)
        return (out.logits_per_image.diagonal() / model.logit_scale.exp()).numpy()


@pytest.mark.parametrize("truncation", ["torchmetrics", "clip"])
def test_clip_score_matches_the_models_own_similarity(clip_dir, images, truncation):
    captions = [*SHORT, LONG]
    scorer = ClipScorer(str(clip_dir), device="cpu", batch_size=2, truncation=truncation)
    result = clip_score(zip(images, captions, strict=True), scorer)
    cos = reference_cosines(clip_dir, images, captions, truncation)
    np.testing.assert_allclose(result.per_image, 100 * np.maximum(cos, 0), atol=1e-3)
    assert result.score == pytest.approx(max(100 * cos.mean(), 0), abs=1e-3)
    assert (result.n, result.n_truncated, result.truncation) == (3, 1, truncation)


def test_the_two_truncations_differ_only_for_long_captions(clip_dir, images):
    tm = ClipScorer(str(clip_dir), device="cpu", truncation="torchmetrics")
    oa = ClipScorer(str(clip_dir), device="cpu", truncation="clip")
    short_tm, _ = tm.cosines(images[:2], SHORT)
    short_oa, _ = oa.cosines(images[:2], SHORT)
    np.testing.assert_allclose(short_tm, short_oa, atol=1e-6)
    long_tm, n = tm.cosines(images[2:], [LONG])
    long_oa, _ = oa.cosines(images[2:], [LONG])
    assert n == 1 and abs(long_tm[0] - long_oa[0]) > 1e-6  # the torchmetrics slice drops the end token


def test_missing_weights_say_how_to_fetch_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HOIFORGE_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(BackendUnavailable, match="clip-vit-base-patch16.*hoiforge models fetch"):
        resolve_clip(None)
    with pytest.raises(BackendUnavailable, match="not in the Hugging Face cache"):
        resolve_clip("openai/clip-vit-base-patch16")
