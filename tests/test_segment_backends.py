"""Paper-grade product backends on CPU with tiny random-weight models of the real architectures.

Each model is built from a config (no download), saved to tmp_path the way real weights are
stored, then loaded through the backend's own loading code: GroundingDINO (transformers),
SAM (segment-anything's classes + a .pth state dict) and SAM (transformers SamModel).
Random weights give arbitrary boxes and masks, so the tests check the paths: loading,
preprocessing, batching, label mapping, mask sizes, and the products stage end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hoiforge.datasets.images import decode_rgb
from hoiforge.datasets.masks import decode_mask
from hoiforge.models.tasks import prompt_phrases

DATA = Path(__file__).parent / "data"
PROMPT = "cup, shoe, electronic products, phone, book"
# The tiny tokenizer's vocabulary: BERT specials, the period GroundingDINO separates phrases with.
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ".",
    ",",
    "cup",
    "shoe",
    "electronic",
    "products",
    "phone",
    "book",
    "bottle",
]
TINY_SAM = {
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "image_size": 64,
    "patch_size": 16,
    "prompt_embed_dim": 32,
    "window_size": 2,
    "decoder_depth": 2,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 2,
    "iou_head_hidden_dim": 32,
    "mask_in_chans": 4,
}


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [decode_rgb((DATA / n).read_bytes()) for n in ("coffee.png", "astronaut.png")]


@pytest.fixture(scope="module")
def tiny_grounding_dino(tmp_path_factory) -> str:
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    d = tmp_path_factory.mktemp("grounding-dino")
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast(str(d / "vocab.txt"))
    text = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage2", "stage3", "stage4"],
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=12,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(d)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def tiny_hf_sam(tmp_path_factory) -> str:
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    d = tmp_path_factory.mktemp("hf-sam")
    vision = SamVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=16,
        output_channels=32,
        global_attn_indexes=[1],
        window_size=2,
        mlp_dim=64,
        num_pos_feats=16,
    )
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=64, patch_size=16, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    torch.manual_seed(0)
    SamModel(
        SamConfig(
            vision_config=vision,
            prompt_encoder_config=prompt,
            mask_decoder_config=decoder,
        )
    ).save_pretrained(d)
    SamProcessor(image_processor=SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})).save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def tiny_sam_checkpoint(tmp_path_factory) -> str:
    from hoiforge.models.sam import build_sam

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(build_sam(TINY_SAM).state_dict(), path)  # the original checkpoints are plain state dicts
    return str(path)


# -- GroundingDINO -------------------------------------------------------------------------------
def test_grounding_dino_loads_local_weights_and_maps_labels_to_prompt_phrases(tiny_grounding_dino, images):
    from hoiforge.models.grounding_dino import GroundingDinoDetector

    detector = GroundingDinoDetector(model=tiny_grounding_dino, box_threshold=0.0, text_threshold=0.0)
    found = detector.detect(images, PROMPT)
    assert len(found) == 2
    phrases = prompt_phrases(PROMPT)
    for rgb, products in zip(images, found, strict=True):
        h, w = rgb.shape[:2]
        assert products, "threshold 0 keeps every query whose best token is a phrase token"
        assert len(products) <= 12
        for p in products:
            assert p.label in phrases and p.source == "grounding-dino"
            x0, y0, x1, y1 = p.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert [p.score for p in products] == sorted((p.score for p in products), reverse=True)
    strict = GroundingDinoDetector(model=tiny_grounding_dino, box_threshold=1.0).detect(images[:1], PROMPT)
    assert strict == [[]]


def test_grounding_dino_token_to_phrase_mapping(tiny_grounding_dino):
    from hoiforge.models.grounding_dino import GroundingDinoDetector, detection_prompt

    detector = GroundingDinoDetector(model=tiny_grounding_dino)
    text = detection_prompt(prompt_phrases(PROMPT))
    assert text == "cup. shoe. electronic products. phone. book."
    ids = detector.processor.tokenizer(text, return_tensors="pt")["input_ids"][0]
    tokens = detector.processor.tokenizer.convert_ids_to_tokens(ids)
    owner = dict(zip(tokens, detector._phrase_of_token(ids), strict=True))
    assert owner["cup"] == 0 and owner["electronic"] == 2 and owner["products"] == 2 and owner["book"] == 4
    assert owner["[CLS]"] == -1 and owner["."] == -1


# -- SAM -----------------------------------------------------------------------------------------
def test_registry_architectures_match_segment_anything_checkpoints():
    """Our build of vit_b/l/h has exactly the parameter names and shapes of segment-anything's own."""
    from hoiforge.models.sam import SAM_ARCHS, build_sam, sam_modeling

    sam_modeling()
    from segment_anything.build_sam import sam_model_registry

    with torch.device("meta"):  # shapes only: no memory, no time
        for name in SAM_ARCHS:
            ours = {k: v.shape for k, v in build_sam(SAM_ARCHS[name]).state_dict().items()}
            theirs = {k: v.shape for k, v in sam_model_registry[name]().state_dict().items()}
            assert ours == theirs, name


def test_segment_anything_loads_a_checkpoint_and_segments_boxes_in_a_batch(tiny_sam_checkpoint, images):
    from hoiforge.models.sam import SegmentAnythingSegmenter

    segmenter = SegmentAnythingSegmenter(checkpoint=tiny_sam_checkpoint, model_type=TINY_SAM)
    saved = torch.load(tiny_sam_checkpoint, weights_only=True)
    loaded = segmenter.model.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    boxes = [[(150, 20, 410, 210), (80, 60, 480, 390)], []]
    out = segmenter.segment(images, boxes)
    assert len(out[0]) == 2 and out[1] == []
    for mask, score in out[0]:
        assert mask.shape == images[0].shape[:2] and mask.dtype == bool and np.isfinite(score)


def test_hf_sam_loads_a_local_model_and_segments_boxes_in_a_batch(tiny_hf_sam, images):
    from hoiforge.models.sam import HfSamSegmenter

    segmenter = HfSamSegmenter(model=tiny_hf_sam)
    out = segmenter.segment(images, [[(150, 20, 410, 210)], [(280, 340, 500, 512), (20, 150, 360, 512)]])
    assert [len(o) for o in out] == [1, 2]
    for rgb, per in zip(images, out, strict=True):
        for mask, score in per:
            assert mask.shape == rgb.shape[:2] and mask.dtype == bool and np.isfinite(score)


def test_sam_checks_say_what_to_do(tmp_path):
    from hoiforge.errors import BackendUnavailable
    from hoiforge.models.sam import HfSamSegmenter, SegmentAnythingSegmenter

    with pytest.raises(BackendUnavailable, match="sam_vit_h_4b8939.pth"):
        SegmentAnythingSegmenter.check(checkpoint=str(tmp_path / "none.pth"))
    with pytest.raises(BackendUnavailable, match="model_type"):
        SegmentAnythingSegmenter.check(checkpoint=str(tmp_path / "none.pth"), model_type="vit_x")
    with pytest.raises(BackendUnavailable, match="neither a model directory nor a Hugging Face repo id"):
        HfSamSegmenter.check(model=str(tmp_path / "no-such-dir"))
    with pytest.raises(BackendUnavailable, match="huggingface-cli download"):
        HfSamSegmenter.check(model="hoiforge-test/not-cached-anywhere")


# -- the products stage on the paper-grade pair ---------------------------------------------------
@pytest.mark.parametrize("segmenter", ["sam", "hf-sam"])
def test_products_stage_with_grounding_dino_and_sam(segmenter, tiny_grounding_dino, tiny_hf_sam, tiny_sam_checkpoint):
    from hoiforge.pipeline.adapter import run_stage
    from hoiforge.stages.products import Products
    from hoiforge.stages.testing import decoded

    options = {
        "sam": {"checkpoint": tiny_sam_checkpoint, "model_type": TINY_SAM},
        "hf-sam": {"model": tiny_hf_sam},
    }[segmenter]
    stage = Products(
        Products.Params(
            stage="products",
            detector={"backend": "grounding-dino", "options": {"model": tiny_grounding_dino, "box_threshold": 0.0, "text_threshold": 0.0}},
            segmenter={"backend": segmenter, "options": options},
            prompt=PROMPT,
            min_area=0.0,
            nms_iou=1.0,
            drop_if_none=False,
        )
    )
    stage.preflight()
    out = run_stage(stage, [decoded(DATA / "coffee.png", 0), decoded(DATA / "astronaut.png", 1)])
    for s in out:
        assert s.live, s.reason
        assert s.ann["stages"]["products"]["backend"] == f"grounding-dino+{segmenter}"
        products = s.ann["products"]
        assert s.metrics["products"] == len(products)
        if not products:
            continue  # random masks of one image may all be empty...
        ids = decode_mask(s.members["mask.png"])
        assert ids.max() == len(products)
        for i, p in enumerate(products, start=1):
            assert p["label"] in prompt_phrases(PROMPT) and p["mask_index"] == i
            assert p["area"] == int((ids == i).sum()) > 0
            assert p["mask_score"] is not None
        assert s.metrics["product_label"] == products[0]["label"]
    assert any(s.ann["products"] for s in out), "...but not of every image (seeded weights give several)"


# -- half precision (the GPU path), exercised on CPU in bfloat16 -----------------------------------
def test_backends_run_in_bfloat16(tiny_grounding_dino, tiny_hf_sam, tiny_sam_checkpoint, images):
    from hoiforge.models.grounding_dino import GroundingDinoDetector
    from hoiforge.models.sam import HfSamSegmenter, SegmentAnythingSegmenter

    detector = GroundingDinoDetector(model=tiny_grounding_dino, box_threshold=0.0, device="cpu", dtype="bfloat16")
    assert next(detector.model.parameters()).dtype == torch.bfloat16
    assert detector.detect(images[:1], PROMPT)[0]
    boxes = [[(150, 20, 410, 210)]]
    sam = SegmentAnythingSegmenter(
        checkpoint=tiny_sam_checkpoint,
        model_type=TINY_SAM,
        device="cpu",
        dtype="bfloat16",
    )
    assert next(sam.model.image_encoder.parameters()).dtype == torch.bfloat16
    hf = HfSamSegmenter(model=tiny_hf_sam, device="cpu", dtype="bfloat16")
    for segmenter in (sam, hf):
        [[(mask, score)]] = segmenter.segment(images[:1], boxes)
        assert mask.shape == images[0].shape[:2] and np.isfinite(score)
