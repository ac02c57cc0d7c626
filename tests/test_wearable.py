"""Wearable-area labels: import of human annotations (PNG folder, 3-colour PNGs, COCO json) and WD segmenter inference.

Fixtures: tests/data/shoe_crop.png (the left shoe of basketball1.png) and its hand-made label
tests/data/wear_labels/shoe_crop.png (0 background, 1 the traced shoe, 2 a patch at the collar),
tests/data/shoe_crop_wear.coco.json (the same regions: a polygon and a compressed RLE).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hoiforge.datasets import wearable as W
from hoiforge.errors import BackendUnavailable
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages import stage_class
from hoiforge.stages.testing import decoded
from hoiforge.stages.wear_labels import WearLabels

DATA = Path(__file__).parent / "data"
LABEL = DATA / "wear_labels" / "shoe_crop.png"
COCO = DATA / "shoe_crop_wear.coco.json"
# pycocotools 2.0.11's mask.encode of the fixture's two classes (computed once with it): the
# compressed RLE here must read and write exactly COCO's format.
PYCOCOTOOLS_RLE = {
    "visible": "_;4X14L1O001O04MO00001O0000001O00001L301O0O2O001O2M2O1O10O01O0010O002@ZO6h0E[O;k000000000O1000000O2O0O1O5KR:",
    "wearable": "gc04X10000000000000000000Ue1",
}


def fixture_labels() -> np.ndarray:
    return np.asarray(Image.open(LABEL))


def importer(**params) -> WearLabels:
    return WearLabels(WearLabels.Params(stage="wear_labels", **params))


def wear_of(sample) -> np.ndarray:
    return W.decode_labels(sample.members["wear.png"])


# -- the committed fixture ---------------------------------------------------------------------
def test_fixture_label_is_a_3_class_mask_of_the_crop():
    labels = fixture_labels()
    assert labels.shape == (44, 64) == np.asarray(Image.open(DATA / "shoe_crop.png")).shape[:2]
    assert Image.open(LABEL).mode == "L"
    assert np.bincount(labels.ravel()).tolist() == [2143, 629, 44]
    # The traced shoe is the dark sneaker: darker than the floor around it.
    grey = np.asarray(Image.open(DATA / "shoe_crop.png").convert("L")).astype(float)
    assert grey[labels > 0].mean() < grey[labels == 0].mean() - 15


# -- PNG folder --------------------------------------------------------------------------------
def test_value_png_is_imported_by_file_stem():
    out = run_stage(importer(labels_dir=str(DATA / "wear_labels")), [decoded(DATA / "shoe_crop.png")])[0]
    assert out.live, out.reason
    assert np.array_equal(wear_of(out), fixture_labels())
    assert out.ann["wear"] == {"source": "annotation", "file": str(LABEL), "visible": 629, "wearable": 44}
    assert out.ann["stages"]["wear_labels"]["backend"] == "annotations"


def test_three_colour_png_with_default_and_custom_colour_tables(tmp_path):
    labels = fixture_labels()
    for colours, table in (
        (None, {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0)}),
        ({"0,0,0": 0, "255,255,255": 1, "#0000ff": 2}, {0: (0, 0, 0), 1: (255, 255, 255), 2: (0, 0, 255)}),
    ):
        folder = tmp_path / f"colours{len(str(colours))}"
        folder.mkdir()
        rgb = np.zeros((*labels.shape, 3), np.uint8)
        for cls, colour in table.items():
            rgb[labels == cls] = colour
        Image.fromarray(rgb).save(folder / "shoe_crop.png")
        out = run_stage(importer(labels_dir=str(folder), colours=colours), [decoded(DATA / "shoe_crop.png")])[0]
        assert out.live, out.reason
        assert np.array_equal(wear_of(out), labels)


def test_corrupted_labels_fail_only_their_sample_with_a_clear_reason(tmp_path):
    good, small, bad_value, bad_colour = (tmp_path / n for n in ("good", "small", "value", "colour"))
    for d in (good, small, bad_value, bad_colour):
        d.mkdir()
    shutil.copy(LABEL, good / "shoe_crop.png")
    # Wrong size: the label of another resolution.
    Image.fromarray(fixture_labels()).resize((32, 22), Image.NEAREST).save(small / "shoe_crop.png")
    # Unknown class value: a stray 3 and a 255 (an antialiased 0/255 mask).
    broken = fixture_labels().copy()
    broken[0, 0], broken[1, :4] = 3, 255
    Image.fromarray(broken).save(bad_value / "shoe_crop.png")
    rgb = np.zeros((44, 64, 3), np.uint8)
    rgb[10:12, 10:12] = (255, 128, 0)  # orange is in no colour table
    Image.fromarray(rgb).save(bad_colour / "shoe_crop.png")

    # Wrong size, and a good one beside it in the same batch (the folder holds basketball1's
    # label too, at the crop's size): only the bad sample fails.
    Image.fromarray(fixture_labels()).save(good / "basketball1.png")
    both = run_stage(importer(labels_dir=str(good)), [decoded(DATA / "shoe_crop.png", 0), decoded(DATA / "basketball1.png", 1)])
    assert both[0].live and np.array_equal(wear_of(both[0]), fixture_labels())
    assert (both[1].status, both[1].stage) == ("failed", "wear_labels")
    assert both[1].reason == "bad wear label: basketball1.png: label is 64x44, image is 640x480"

    cases = {
        small: "bad wear label: shoe_crop.png: label is 32x22, image is 64x44",
        bad_value: "bad wear label: shoe_crop.png: unknown class value(s) 3 (1 px), 255 (4 px); allowed 0 background, 1 visible, 2 wearable",
        bad_colour: "bad wear label: shoe_crop.png: unknown colour(s) (255, 128, 0) (4 px); the colour table knows [(0, 0, 0), (0, 255, 0), (255, 0, 0)]",
    }
    for folder, reason in cases.items():
        out = run_stage(importer(labels_dir=str(folder)), [decoded(DATA / "shoe_crop.png")])[0]
        assert (out.status, out.stage, out.reason) == ("failed", "wear_labels", reason)
        assert "wear.png" not in out.members or out.members["wear.png"] is None


def test_an_image_without_a_label_is_dropped_kept_or_failed_as_asked():
    sample = decoded(DATA / "coffee.png")
    dropped = run_stage(importer(labels_dir=str(DATA / "wear_labels")), [sample])[0]
    assert (dropped.status, dropped.reason) == ("dropped", "no wear label for 'coffee'")
    kept = run_stage(importer(labels_dir=str(DATA / "wear_labels"), if_missing="keep"), [decoded(DATA / "coffee.png")])[0]
    assert kept.live and not kept.members.get("wear.png") and "wear" not in kept.ann
    failed = run_stage(importer(labels_dir=str(DATA / "wear_labels"), if_missing="fail"), [decoded(DATA / "coffee.png")])[0]
    assert failed.status == "failed"


# -- COCO json ---------------------------------------------------------------------------------
def test_coco_json_polygon_and_rle_give_the_same_labels_as_the_png():
    out = run_stage(importer(coco_json=str(COCO)), [decoded(DATA / "shoe_crop.png")])[0]
    assert out.live, out.reason
    assert np.array_equal(wear_of(out), fixture_labels())
    assert out.ann["wear"]["file"] == "shoe_crop_wear.coco.json:shoe_crop.png"


def test_compressed_rle_is_cocos_format():
    labels = fixture_labels()
    for name, cls in (("visible", 1), ("wearable", 2)):
        assert W.rle_encode(labels == cls)["counts"] == PYCOCOTOOLS_RLE[name]
        assert np.array_equal(W.rle_decode({"size": [44, 64], "counts": PYCOCOTOOLS_RLE[name]}), labels == cls)
    rng = np.random.default_rng(7)
    for _ in range(20):
        mask = rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < rng.random()
        assert np.array_equal(W.rle_decode(W.rle_encode(mask)), mask)
    with pytest.raises(W.LabelError, match="RLE runs sum to"):
        W.rle_decode({"size": [44, 64], "counts": [5, 5]})
    with pytest.raises(W.LabelError, match="longer than the size"):
        W.rle_decode({"size": [4, 5], "counts": W.rle_encode(np.ones((30, 30), bool))["counts"]})


def test_bad_coco_annotations_fail_the_sample(tmp_path):
    doc = json.loads(COCO.read_text())
    wrong_size = json.loads(json.dumps(doc))
    wrong_size["images"][0]["width"] = 128
    unknown = json.loads(json.dumps(doc))
    unknown["categories"].append({"id": 3, "name": "lace"})
    unknown["annotations"][0]["category_id"] = 3
    outside = json.loads(json.dumps(doc))
    outside["annotations"][0]["segmentation"] = [[0, 0, 300, 0, 300, 30]]
    cases = {
        "size": (wrong_size, "bad wear label: x.json:shoe_crop.png: annotated at 128x44, image is 64x44"),
        "category": (unknown, "bad wear label: x.json:shoe_crop.png: annotation 1 has category 'lace'; known: visible, wearable"),
        "outside": (
            outside,
            "bad wear label: x.json:shoe_crop.png: annotation 1: polygon reaches outside the 64x44 image (wrong image or size?)",
        ),
    }
    for name, (d, reason) in cases.items():
        path = tmp_path / name / "x.json"
        path.parent.mkdir()
        path.write_text(json.dumps(d))
        out = run_stage(importer(coco_json=str(path)), [decoded(DATA / "shoe_crop.png")])[0]
        assert (out.status, out.reason) == ("failed", reason), name


def test_params_and_preflight_say_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="needs labels_dir and/or coco_json"):
        WearLabels.Params(stage="wear_labels")
    with pytest.raises(ValueError, match="source 'segmenter' needs the segmenter slot"):
        WearLabels.Params(stage="wear_labels", source="segmenter")
    with pytest.raises(ValueError, match=r"options.model: required by backend 'segformer'"):
        WearLabels.Params(stage="wear_labels", source="segmenter", segmenter="segformer")
    with pytest.raises(BackendUnavailable, match="does not exist"):
        importer(labels_dir=str(tmp_path / "nope")).preflight()
    assert stage_class("wear_labels") is WearLabels


# -- WD segmenter inference ----------------------------------------------------------------------
@pytest.fixture
def torch():
    """torch, or a skip of only the segmenter tests (the import tests above need neither)."""
    pytest.importorskip("transformers")
    return pytest.importorskip("torch")


def tiny_segformer(folder: Path, num_labels: int = 3, favour: int | None = None) -> Path:
    """A randomly initialised SegFormer of the real architecture; ``favour`` biases one class."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    config = SegformerConfig(
        num_labels=num_labels, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=16, sr_ratios=[8, 4, 2, 1],
    )  # fmt: skip
    model = SegformerForSemanticSegmentation(config).eval()
    if favour is not None:
        with torch.no_grad():
            model.decode_head.classifier.bias.zero_()
            model.decode_head.classifier.bias[favour] = 30.0
    model.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "wd.pt")
    return folder


def shoe_only_sample():
    """The crop as the shoes stage would write it: shoe pixels, alpha 0 elsewhere."""
    grey = np.asarray(Image.open(DATA / "shoe_crop.png").convert("RGB"))
    alpha = (fixture_labels() > 0).astype(np.uint8) * 255
    rgba = np.dstack([grey * (alpha[..., None] > 0), alpha]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "PNG")
    s = decoded(DATA / "shoe_crop.png")
    s.members["shoe.png"] = buf.getvalue()
    return s, alpha > 0


def test_segmenter_labels_with_confidence_and_review_flag(torch, tmp_path):
    from hoiforge.models.wd_segmenter import SegformerWearSegmenter

    folder = tiny_segformer(tmp_path / "random")
    seg = SegformerWearSegmenter(model=str(folder), size=64)
    image = np.asarray(Image.open(DATA / "shoe_crop.png").convert("RGB"))
    (pred,) = seg.predict([image])
    assert pred.labels.shape == pred.confidence.shape == image.shape[:2]
    assert set(np.unique(pred.labels).tolist()) <= {0, 1, 2}
    assert (pred.confidence >= 1 / 3 - 1e-6).all() and (pred.confidence <= 1 + 1e-6).all()
    # A random model is unsure: its mean confidence is far below 0.8 -> review.
    assert pred.review and any("mean confidence" in r for r in pred.review_reasons)

    # The state-dict path (weights_only): a model that is sure of "wearable" everywhere.
    sure = tiny_segformer(tmp_path / "sure", favour=2)
    seg = SegformerWearSegmenter(model=str(sure), weights=str(sure / "wd.pt"), size=64)
    _, valid = shoe_only_sample()
    (pred,) = seg.predict([image], [valid])
    assert np.array_equal(pred.labels, np.where(valid, 2, 0))
    assert pred.mean_confidence > 0.99 and pred.wearable_fraction == 1.0 and not pred.review
    # Sure of "visible": no wearable area on an unworn shoe -> review.
    visible_only = tiny_segformer(tmp_path / "visible", favour=1)
    (pred,) = SegformerWearSegmenter(model=str(visible_only), size=64).predict([image], [valid])
    assert pred.review and pred.review_reasons == ["wearable area 0.000 of the shoe < 0.02"]


def test_segmenter_refuses_a_model_that_is_not_3_class(torch, tmp_path):
    from hoiforge.models.wd_segmenter import SegformerWearSegmenter

    with pytest.raises(BackendUnavailable, match="num_labels=5"):
        SegformerWearSegmenter(model=str(tiny_segformer(tmp_path / "five", num_labels=5)))
    folder = tiny_segformer(tmp_path / "three")
    torch.save({"decode_head.classifier.weight": torch.zeros(3, 16, 1, 1)}, tmp_path / "partial.pt")
    with pytest.raises(RuntimeError, match="Missing key"):
        SegformerWearSegmenter(model=str(folder), weights=str(tmp_path / "partial.pt"))
    with pytest.raises(BackendUnavailable, match="no model given"):
        SegformerWearSegmenter.check(model=None)


def test_wear_labels_stage_runs_the_segmenter_on_shoe_png(torch, tmp_path):
    sure = tiny_segformer(tmp_path / "sure", favour=2)
    stage = importer(source="segmenter", input="shoe", segmenter={"backend": "segformer", "options": {"model": str(sure), "size": 64}})
    stage.preflight()
    sample, valid = shoe_only_sample()
    out = run_stage(stage, [sample])[0]
    assert out.live, out.reason
    assert np.array_equal(wear_of(out), np.where(valid, 2, 0))
    confidence = np.asarray(Image.open(io.BytesIO(out.members["wearconf.png"])))
    assert confidence.shape == valid.shape and (confidence[valid] == 255).all()
    assert out.ann["wear"]["source"] == "segmenter:segformer-wd" and out.ann["wear"]["review"] is False
    assert out.ann["wear"]["wearable"] == int(valid.sum()) and out.metrics["wear_review"] is False


def test_wear_labels_segmenter_sees_the_shoe_crop_not_the_whole_frame(torch, tmp_path):
    """A small shoe in a big frame: WD gets the square around the shoe, its labels land back in place."""
    sure = tiny_segformer(tmp_path / "sure", favour=2)
    stage = importer(source="segmenter", input="shoe", segmenter={"backend": "segformer", "options": {"model": str(sure), "size": 64}})
    small, valid_small = shoe_only_sample()
    shoe = np.asarray(Image.open(io.BytesIO(small.members["shoe.png"])))
    frame = np.zeros((400, 600, 4), np.uint8)
    frame[250 : 250 + shoe.shape[0], 400 : 400 + shoe.shape[1]] = shoe
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "PNG")
    small.members["shoe.png"] = buf.getvalue()
    stage.setup()
    stage.ready = True
    seen, predict = [], stage.backends["segmenter"].predict
    stage.backends["segmenter"].predict = lambda images, valid: seen.extend(i.shape for i in images) or predict(images, valid)
    out = run_stage(stage, [small])[0]
    ys, xs = np.nonzero(valid_small)
    side = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) * 1.3  # the shoes' box grown by 0.15 per side
    assert abs(seen[0][0] - side) <= 2 and seen[0][0] == seen[0][1]  # a square crop around the shoe, not 400x600
    labels = wear_of(out)
    expected = np.zeros((400, 600), np.uint8)
    expected[250 : 250 + shoe.shape[0], 400 : 400 + shoe.shape[1]] = np.where(valid_small, 2, 0)
    assert labels.shape == (400, 600) and np.array_equal(labels, expected)


# -- the annotators' check ---------------------------------------------------------------------
def test_wear_check_lists_bad_missing_and_orphan_labels(tmp_path):
    from typer.testing import CliRunner

    from hoiforge.cli.wear import wear_app

    images = tmp_path / "images"
    images.mkdir()
    for name in ("shoe_crop.png", "coffee.png"):
        shutil.copy(DATA / name, images / name)
    labels = tmp_path / "labels"
    labels.mkdir()
    shutil.copy(LABEL, labels / "shoe_crop.png")
    Image.fromarray(fixture_labels()).save(labels / "lost.png")
    ok = CliRunner().invoke(wear_app, ["check", str(images), "--labels-dir", str(labels)])
    assert ok.exit_code == 0, ok.output
    assert "missing  coffee" in ok.output and "orphan   lost" in ok.output
    assert ok.output.strip().endswith("1 ok, 0 bad, 1 missing, 1 orphan labels")
    shutil.copy(LABEL, labels / "coffee.png")  # a 64x44 label for a 600x400 photo
    bad = CliRunner().invoke(wear_app, ["check", str(images), "--labels-dir", str(labels), "--coco", str(COCO)])
    assert bad.exit_code == 1
    assert "bad      coffee: coffee.png: label is 64x44, image is 600x400" in bad.output
