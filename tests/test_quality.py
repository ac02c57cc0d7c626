"""quality stage: BRISQUE technical quality (embedded) and the LAION aesthetic predictor (paper-grade,
run here with a tiny randomly initialised CLIP and MLP saved and reloaded through the real paths)."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from hoiforge.errors import BackendUnavailable
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.quality import Quality
from hoiforge.stages.testing import decoded

DATA = Path(__file__).parent / "data"
PHOTOS = ["astronaut.png", "coffee.png", "basketball1.png"]


def quality(**params) -> Quality:
    return Quality(Quality.Params(stage="quality", **params))


# -- BRISQUE (embedded) ----------------------------------------------------------------------


def test_brisque_scores_blurred_photos_worse_and_filters_them():
    originals = [decoded(DATA / n, i) for i, n in enumerate(PHOTOS)]
    blurred = []
    for i, name in enumerate(PHOTOS):
        s = decoded(DATA / name, 10 + i)
        s.set_image(cv2.imencode(".png", cv2.GaussianBlur(s.rgb()[..., ::-1], (0, 0), 4))[1].tobytes())
        blurred.append(s)
    out = run_stage(quality(scorer="brisque", max_brisque=70), originals + blurred)
    sharp, soft = out[: len(PHOTOS)], out[len(PHOTOS) :]
    for s in sharp:
        assert s.live, s.reason
        assert 0 <= s.ann["quality"]["brisque"] < 40  # clean photos score low (better)
        assert s.metrics["brisque"] == s.ann["quality"]["brisque"]
        assert "aesthetic" not in s.ann and "aesthetic" not in s.metrics  # never reported as aesthetic
    for s in soft:
        assert not s.live and s.stage == "quality" and "brisque" in s.reason
    for a, b in zip(sharp, soft):
        assert b.metrics["brisque"] > a.metrics["brisque"] + 30


def test_thresholds_belong_to_their_backend():
    with pytest.raises(ValueError, match="min_aesthetic"):
        Quality.Params(stage="quality", min_aesthetic=6, scorer="brisque")
    with pytest.raises(ValueError, match="max_brisque"):
        Quality.Params(stage="quality", max_brisque=50, scorer="laion-aesthetic")


# -- LAION aesthetic (paper-grade, tiny CLIP) --------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny CLIP of the real architecture (projection 768, as ViT-L/14) and a random LAION MLP."""
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from hoiforge.models.aesthetic import build_aesthetic_mlp

    root = tmp_path_factory.mktemp("aesthetic")
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(image_size=224, patch_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        projection_dim=768,
    )
    clip = CLIPModel(config).eval()
    clip.save_pretrained(root / "clip")
    CLIPImageProcessorPil().save_pretrained(root / "clip")
    mlp = build_aesthetic_mlp()
    torch.save(mlp.state_dict(), root / "sac+logos+ava1-l14-linearMSE.pth")
    return root, clip, mlp


def _expected_scores(clip, mlp, images) -> list[float]:
    """Independent reference: the full CLIPModel's image features, L2-normalised, through the MLP."""
    import torch
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    pixels = CLIPImageProcessorPil()(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        feats = clip.get_image_features(pixel_values=pixels).pooler_output
        feats = feats / feats.norm(dim=-1, keepdim=True)
        return mlp.eval()(feats).squeeze(-1).tolist()


def test_laion_aesthetic_loads_weights_and_scores_batched(tiny_clip):
    root, clip, mlp = tiny_clip
    options = {"clip_model": str(root / "clip"), "mlp_weights": str(root / "sac+logos+ava1-l14-linearMSE.pth"), "device": "cpu"}
    stage = quality(scorer={"backend": "laion-aesthetic", "options": options}, min_aesthetic=None)
    stage.preflight()
    samples = [decoded(DATA / n, i) for i, n in enumerate(PHOTOS)]
    expected = _expected_scores(clip, mlp, [s.rgb() for s in samples])
    out = run_stage(stage, samples)
    got = [s.ann["aesthetic"]["score"] for s in out]
    assert got == pytest.approx(expected, abs=2e-4)  # the saved weights, not a fresh random init
    assert len(set(got)) == len(got)  # per image, in batch order
    assert all(s.ann["aesthetic"]["backend"] == "laion-aesthetic" and s.metrics["aesthetic"] for s in out)

    # The threshold drops exactly the samples scoring below it.
    cut = sorted(got)[1]
    out = run_stage(
        quality(scorer={"backend": "laion-aesthetic", "options": options}, min_aesthetic=cut),
        [decoded(DATA / n, i) for i, n in enumerate(PHOTOS)],
    )
    assert [s.live for s in out] == [g >= cut for g in got]
    assert all("aesthetic" in s.reason for s in out if not s.live)


def test_laion_mlp_reads_safetensors_and_rejects_other_layouts(tiny_clip, tmp_path):
    import torch
    from safetensors.torch import save_file

    from hoiforge.models.aesthetic import load_aesthetic_mlp

    _, _, mlp = tiny_clip
    save_file(mlp.state_dict(), tmp_path / "mlp.safetensors")
    x = torch.nn.functional.normalize(torch.randn(4, 768), dim=-1)
    with torch.no_grad():
        assert torch.allclose(load_aesthetic_mlp(tmp_path / "mlp.safetensors")(x), mlp.eval()(x))
    torch.save({"fc.weight": torch.zeros(1, 768)}, tmp_path / "other.pth")
    with pytest.raises(BackendUnavailable, match="not a LAION aesthetic MLP"):
        load_aesthetic_mlp(tmp_path / "other.pth")


def test_laion_aesthetic_preflight_says_what_is_missing(tmp_path):
    with pytest.raises(BackendUnavailable, match="no model"):
        quality(scorer="laion-aesthetic").preflight()
    with pytest.raises(BackendUnavailable, match="Hugging Face cache"):
        quality(
            scorer={"backend": "laion-aesthetic", "options": {"clip_model": "openai/clip-vit-large-patch14", "mlp_weights": "x.pth"}}
        ).preflight()
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text("{}")
    with pytest.raises(BackendUnavailable, match="does not exist"):
        quality(
            scorer={
                "backend": "laion-aesthetic",
                "options": {"clip_model": str(tmp_path / "clip"), "mlp_weights": str(tmp_path / "none.pth")},
            }
        ).preflight()
