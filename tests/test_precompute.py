"""Close views, whole product masks and the precompute stage (latents, text and DINOv2 features).

The encoders are tiny random models of the real architectures (diffusers AutoencoderKL, CLIP
text, DINOv2) built from configs and saved to disk, so the real loading path runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hoiforge.datasets.precomputed import decode_array, latent_image_size
from hoiforge.datasets.views import crop_square, decode_strip, encode_strip, mask_to_rle, rle_to_mask, square_box
from hoiforge.errors import BackendUnavailable, RecipeError
from hoiforge.pipeline.adapter import run_stage
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.stages.precompute import Precompute
from hoiforge.stages.products import Products
from hoiforge.stages.testing import decoded

DATA = Path(__file__).parent / "data"
torch = pytest.importorskip("torch")


# -- close views and whole masks ----------------------------------------------------------------
def test_square_box_is_centred_and_grown():
    assert square_box([10, 20, 50, 40], 0.25) == [0.0, 0.0, 60.0, 60.0]  # side 40 * 1.5, centre (30, 30)


def test_crop_square_pads_white_outside_the_image():
    rgb = np.zeros((40, 60, 3), np.uint8)
    tile = crop_square(rgb, [-20, -20, 20, 20], 40)  # a quarter inside the image
    assert tile.shape == (40, 40, 3)
    assert (tile[:20, :20] == 255).all() and (tile[20:, 20:] == 0).all()


def test_a_strip_has_its_fixed_tile_count_whatever_the_products():
    tile = np.full((32, 32, 3), 200, np.uint8)
    for n in (0, 1, 3, 6):
        data = encode_strip([tile] * n, slots=4, size=32)
        back = decode_strip(data)
        assert len(back) == 4 and len(decode_strip(data, min(n, 4))) == min(n, 4)
        assert all(t.mean() > 190 for t in back[:n]) and not any(t.max() > 8 for t in back[n:])


def test_strip_round_trip_and_rle_round_trip():
    tiles = [np.full((32, 32, 3), v, np.uint8) for v in (10, 128, 240)]
    back = decode_strip(encode_strip(tiles))
    assert len(back) == 3 and all(np.abs(a.astype(int) - b).max() <= 3 for a, b in zip(tiles, back, strict=True))
    mask = np.zeros((37, 53), bool)
    mask[5:20, 7:30] = True
    mask[30, 50] = True
    rle = mask_to_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    assert np.array_equal(rle_to_mask(rle), mask)


def test_products_write_views_and_whole_masks_that_survive_overlaps():
    (s,) = run_stage(Products(Products.Params(stage="products", detector="embedded", min_products=1)), [decoded(DATA / "coffee.png")])
    assert s.live
    products, h, w = s.ann["products"], s.ann["image"]["height"], s.ann["image"]["width"]
    views = s.ann["views"]
    tiles = decode_strip(s.members["views.jpg"], views["count"])
    assert len(tiles) == len(products) == views["count"] and tiles[0].shape == (256, 256, 3)
    # One strip size per build (views_tiles tiles, black after the last product): loaders stack it.
    assert len(decode_strip(s.members["views.jpg"])) == views["tiles"] == 4
    assert not decode_strip(s.members["views.jpg"])[-1].any()
    from hoiforge.datasets.masks import decode_mask

    ids = decode_mask(s.members["mask.png"])
    for i, q in enumerate(products, start=1):
        whole = rle_to_mask(q["rle"])
        assert whole.shape == (h, w)
        assert np.all(whole[ids == i])  # the instance map's pixels of a product lie inside its whole mask
        x0, y0, x1, y1 = q["close_view"]
        assert x1 - x0 == pytest.approx(y1 - y0)  # square


def test_persons_carry_a_square_close_view():
    from hoiforge.stages.person import Person

    (s,) = run_stage(Person(Person.Params(stage="person")), [decoded(DATA / "basketball1.png")])
    box, view = s.ann["persons"][0]["box"], s.ann["persons"][0]["close_view"]
    assert view[2] - view[0] == pytest.approx(view[3] - view[1])
    assert view[0] <= box[0] and view[2] >= box[2] and view[1] <= box[1] and view[3] >= box[3]


# -- the encoders (tiny random models of the real architectures) --------------------------------
@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    """A Stable Diffusion layout folder: vae/, text_encoder/, tokenizer/ (tiny, random)."""
    from diffusers import AutoencoderKL
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),  # four blocks: the real VAE's 8x downsampling
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    ).save_pretrained(root / "vae")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)])}
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(root / "tokenizer")
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    CLIPTextModel(config).save_pretrained(root / "text_encoder")
    (root / "model_index.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model

    root = tmp_path_factory.mktemp("dino")
    torch.manual_seed(0)
    Dinov2Model(
        Dinov2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=56, patch_size=14)
    ).save_pretrained(root)
    return root


def _stage(sd_dir: Path, dino_dir: Path, **params) -> Precompute:
    return Precompute(
        Precompute.Params(
            stage="precompute",
            vae={"backend": "sd-vae", "options": {"model": str(sd_dir)}},
            text_encoder={"backend": "clip-text", "options": {"model": str(sd_dir)}},
            image_encoder={"backend": "dinov2", "options": {"model": str(dino_dir), "size": 56}},
            **params,
        )
    )


def test_precompute_writes_latents_text_and_dino_features(sd_dir, dino_dir):
    from diffusers import AutoencoderKL

    products = Products(Products.Params(stage="products", min_products=0, drop_if_none=False))
    samples = run_stage(products, [decoded(DATA / "coffee.png", 0), decoded(DATA / "basketball1.png", 1)])
    long_caption = " ".join(["a red cup on a saucer beside a spoon"] * 30)  # > 77 tokens: 2+ chunks
    for s, text in zip(samples, [long_caption, "a player"], strict=True):
        s.members["txt"] = text.encode()
    stage = _stage(sd_dir, dino_dir, short_side=64)
    stage.preflight()
    out = run_stage(stage, samples)
    assert all(s.live for s in out), [s.reason for s in out]
    vae = AutoencoderKL.from_pretrained(sd_dir / "vae").eval()
    for s in out:
        h, w = s.ann["image"]["height"], s.ann["image"]["width"]
        latent = decode_array(s.members["latent.npy"])
        lw, lh = latent_image_size(w, h, 64)
        assert latent.dtype == np.float16 and latent.shape == (4, lh // 8, lw // 8)
        # The stored latent equals the VAE's mean x scaling factor of the same resize (fp16 rounding).
        import cv2

        x = torch.from_numpy(cv2.resize(s.rgb(), (lw, lh), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None]
        with torch.no_grad():
            expected = vae.encode(x.float() / 127.5 - 1).latent_dist.mean[0].numpy() * vae.config.scaling_factor
        assert np.allclose(latent, expected, atol=2e-2)
        dino = decode_array(s.members["dino.npy"])
        assert dino.shape == (len(s.ann.get("products", [])), 1 + (56 // 14) ** 2, 32)
        assert s.ann["precompute"]["resolution"] == 64 and s.ann["precompute"]["dino_layer"] == -2
    text_long, text_short = (decode_array(s.members["text.npy"]) for s in out)
    assert text_long.shape[0] > 77 and text_long.shape[0] % 77 == 0 and text_short.shape == (77, 32)


def test_precompute_needs_its_inputs_and_says_what_to_fetch(sd_dir, tmp_path):
    with pytest.raises(RecipeError, match=r"precompute needs txt \(written by: caption\)"):
        parse_recipe({"name": "t", "stages": [{"stage": "decode"}, {"stage": "precompute", "image_encoder": None}]})
    ok = parse_recipe({"name": "t", "stages": [{"stage": "decode"}, {"stage": "precompute", "text_encoder": None, "image_encoder": None}]})
    assert ok.stages[1].vae.backend == "sd-vae"
    from hoiforge.pipeline.weights_plan import required_for, with_weights

    assert [s.name for s in required_for(ok)] == ["stable-diffusion-v1-5"]
    with pytest.raises(BackendUnavailable, match="hoiforge models fetch stable-diffusion-v1-5"):
        with_weights(ok, tmp_path / "empty-root")
    with pytest.raises(BackendUnavailable, match="holds no vae/config.json"):
        Precompute(Precompute.Params(stage="precompute", vae={"backend": "sd-vae", "options": {"model": str(tmp_path)}},
                                     text_encoder=None, image_encoder=None)).preflight()  # fmt: skip
