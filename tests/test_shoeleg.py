"""shoe-leg recipe: leg.json from the pose, shoe masks / shoe-only images / bootstrap labels from the shoes stage.

Runs the real person, pose and shoes stages on the fixture photos. The reference for "only shoe
pixels" is the hand-traced shoe of tests/data/wear_labels/shoe_crop.png (the left foot's shoe
of basketball1.png, crop at x 100, y 436; see tests/data/SOURCES.md).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hoiforge.datasets import keypoints as K
from hoiforge.datasets import leg as L
from hoiforge.datasets import wearable as W
from hoiforge.datasets.masks import decode_mask, encode_mask
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages import stage_class
from hoiforge.stages.person import Person
from hoiforge.stages.pose import Pose
from hoiforge.stages.shoes import Shoes
from hoiforge.stages.testing import decoded

DATA = Path(__file__).parent / "data"
CROP_ORIGIN = (100, 436)  # where tests/data/shoe_crop.png was cut from basketball1.png
pytest.importorskip("mediapipe")

PAPER_ORDER = [
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
]  # fmt: skip


@pytest.fixture(scope="module")
def posed():
    samples = [decoded(DATA / n, i) for i, n in enumerate(("basketball1.png", "astronaut.png", "coffee.png"))]
    person = Person(Person.Params(stage="person"))
    pose = Pose(Pose.Params(stage="pose", min_score=0.3, leg_json=True))
    return dict(zip(("basketball", "astronaut", "coffee"), run_stage(pose, run_stage(person, samples)), strict=True))


@pytest.fixture(scope="module")
def kept(posed):
    """The shoes stage with cut-off shoes kept (flagged), so basketball1's shoes can be inspected."""
    out = run_stage(Shoes(Shoes.Params(stage="shoes", cut_off="keep")), list(posed.values()))
    return dict(zip(posed, out, strict=True))


def traced_shoe(shape) -> np.ndarray:
    """The hand-traced left shoe of basketball1 (visible + wearable of the fixture label) at image size."""
    crop = np.asarray(Image.open(DATA / "wear_labels" / "shoe_crop.png"))
    full = np.zeros(shape, bool)
    x, y = CROP_ORIGIN
    full[y : y + crop.shape[0], x : x + crop.shape[1]] = crop > 0
    return full


def rgba_of(sample) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(sample.members["shoe.png"])))


# -- leg.json ----------------------------------------------------------------------------------
def test_leg_json_holds_the_12_points_in_the_paper_order(posed):
    s = posed["basketball"]
    doc = json.loads(s.members["leg.json"])
    assert doc["layout"] == "coco-wholebody/shoe-leg-12" and doc["names"] == PAPER_ORDER
    assert doc["foot_names"] == ["left_ankle", "right_ankle", *PAPER_ORDER[6:]]
    person = doc["persons"][0]
    kp133 = np.array(s.ann["persons"][0]["keypoints"])
    leg, foot = np.array(person["leg"]), np.array(person["foot"])
    assert leg.shape == (12, 3) and foot.shape == (8, 3)
    assert np.array_equal(leg, kp133[[K.INDEX[n] for n in PAPER_ORDER]])
    assert np.array_equal(foot[2:], leg[6:]) and np.array_equal(foot[:2], leg[4:6])
    # Anatomy of a standing player: hips above knees above ankles above each foot's toe and heel.
    y = {n: leg[i, 1] for i, n in enumerate(PAPER_ORDER) if leg[i, 2] > 0.3}
    for side in ("left", "right"):
        assert y[f"{side}_hip"] < y[f"{side}_knee"] < y[f"{side}_ankle"] < y[f"{side}_big_toe"]
        assert y[f"{side}_ankle"] < y[f"{side}_heel"]
    assert person["feet_seen"] == ["left", "right"]


def test_leg_normalisation_is_p_over_size_times_09_plus_01_with_0_for_missing(posed):
    s = posed["basketball"]
    doc = json.loads(s.members["leg.json"])
    leg, norm = np.array(doc["persons"][0]["leg"]), np.array(doc["persons"][0]["leg_normalised"])
    w, h = doc["width"], doc["height"]
    assert (w, h) == (640, 480) and doc["size"] == 640  # ONE size for both axes: leg angles survive
    seen = leg[:, 2] > 0.3
    assert not seen[PAPER_ORDER.index("left_small_toe")]  # mediapipe has no small toe: missing
    assert np.allclose(norm[seen], leg[seen, :2] / 640 * 0.9 + 0.1, atol=1e-5)
    assert (norm[~seen] == 0).all() and (norm[seen] >= 0.1).all() and (norm[seen] <= 1.0).all()
    # An angle between two seen points is the same in pixels and normalised.
    a, b = np.flatnonzero(seen)[:2]
    angle = lambda p, q: np.arctan2(q[1] - p[1], q[0] - p[0])
    assert angle(leg[a], leg[b]) == pytest.approx(angle(norm[a], norm[b]), abs=1e-3)
    back = L.denormalise(norm, doc["size"])
    assert np.allclose(back[seen, :2], leg[seen, :2], atol=0.01) and (back[~seen] == 0).all()


def test_leg_png_draws_only_the_legs_and_feet(posed):
    s = posed["basketball"]
    doc = json.loads(s.members["leg.json"])
    leg = np.array(doc["persons"][0]["leg"])
    drawn = np.asarray(Image.open(io.BytesIO(s.members["leg.png"]))).max(axis=2) > 0
    whole = np.asarray(Image.open(io.BytesIO(s.members["pose.png"]))).max(axis=2) > 0
    assert drawn.shape == (doc["height"], doc["width"]) and drawn.sum() > 100
    hips_y = leg[:2][leg[:2, 2] > 0.3][:, 1].min()
    assert not drawn[: int(hips_y) - 6].any()  # nothing above the hips (stick radius 4, dot 4)
    assert whole[: int(hips_y) - 6].any()  # the whole-body pose has the torso, arms and face there
    assert np.all(whole[drawn] | ~drawn[drawn])  # every leg pixel is a drawn pixel of the same size image


def test_upper_body_photo_has_no_foot_points(posed):
    doc = json.loads(posed["astronaut"].members["leg.json"])
    person = doc["persons"][0]
    assert person["feet_seen"] == []
    assert all(v == [0.0, 0.0] for v in person["leg_normalised"][2:])  # knees down unseen


# -- shoes: masks, shoe-only image, bootstrap labels -------------------------------------------
def test_shoe_only_image_holds_only_shoe_pixels(kept):
    s = kept["basketball"]
    assert s.live, s.reason
    rgba = rgba_of(s)
    rgb = s.rgb()
    assert rgba.shape == (*rgb.shape[:2], 4)
    alpha = rgba[..., 3]
    assert set(np.unique(alpha).tolist()) == {0, 255}
    shoe = alpha == 255
    assert (rgba[~shoe, :3] == 0).all()  # black and transparent elsewhere
    assert np.array_equal(rgba[shoe, :3], rgb[shoe])  # the photo's own pixels on the shoe
    # The left foot's shoe against the hand-traced one: it is the shoe, and little else.
    left = next(r for r in s.ann["shoes"] if r["side"] == "left")
    ids = decode_mask(s.members["shoemask.png"])
    mask = ids == s.ann["shoes"].index(left) + 1
    truth = traced_shoe(mask.shape)
    near_truth = cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    iou = (mask & truth).sum() / (mask | truth).sum()
    precision = (mask & near_truth).sum() / mask.sum()
    assert iou >= 0.65 and precision >= 0.95, (iou, precision)  # seen here: 0.75, 1.0
    # Nothing above the knees or away from the feet: every shoe pixel lies below the knee line.
    kp = np.array(s.ann["persons"][0]["keypoints"])
    knee_y = max(kp[K.INDEX["left_knee"], 1], kp[K.INDEX["right_knee"], 1])
    assert np.nonzero(shoe)[0].min() > knee_y


def test_shoes_record_side_box_source_and_the_frame_cut(kept):
    s = kept["basketball"]
    shoes = s.ann["shoes"]
    assert sorted(r["side"] for r in shoes) == ["left", "right"]
    assert all(r["source"] == "foot-grabcut" and r["person"] == 0 for r in shoes)
    kp = np.array(s.ann["persons"][0]["keypoints"])
    for r in shoes:
        x0, y0, x1, y1 = r["box"]
        toe = kp[K.INDEX[f"{r['side']}_big_toe"]]
        assert x0 - 5 <= toe[0] <= x1 + 5 and y0 - 5 <= toe[1] <= y1 + 5, (r, toe)
    by_side = {r["side"]: r for r in shoes}
    # The player's right shoe runs out of the bottom of the frame; the left one is whole.
    assert by_side["right"]["touches_border"] and by_side["right"]["box"][3] == 480
    assert not by_side["left"]["touches_border"]
    ids = decode_mask(s.members["shoemask.png"])
    assert [int((ids == i + 1).sum()) for i in range(len(shoes))] == [r["area"] for r in shoes]
    assert s.metrics["shoes"] == 2 and s.metrics["shoe_area"] == round(float((ids > 0).mean()), 5)


def test_bootstrap_wear_labels_are_the_shoe_with_no_wearable_area(kept):
    s = kept["basketball"]
    labels = W.decode_labels(s.members["wear.png"])
    shoe = rgba_of(s)[..., 3] > 0
    assert set(np.unique(labels).tolist()) == {0, 1}
    assert np.array_equal(labels == 1, shoe)
    assert s.ann["wear"]["source"] == "bootstrap" and s.ann["wear"]["wearable"] == 0
    assert s.ann["wear"]["visible"] == int(shoe.sum())


def test_drop_reasons(posed, kept):
    paper = run_stage(Shoes(Shoes.Params(stage="shoes")), [posed["basketball"], posed["astronaut"]])
    basketball, astronaut = paper
    assert basketball.status == "dropped" and basketball.stage == "shoes"
    assert basketball.reason == "shoe cut off by the frame (person 0 right)"
    assert astronaut.status == "dropped" and astronaut.reason.startswith("no feet visible")
    # Dropped earlier (no person): passed through untouched.
    assert kept["coffee"].stage == "person"


def test_a_foot_running_out_of_the_frame_drops_the_image(tmp_path):
    """basketball1 cut 20 rows above its bottom: the right foot's toe is outside, its heel inside; the
    left shoe (whole in the full photo down to y 472) loses its toe cap to the cut too."""
    path = tmp_path / "cut.png"
    Image.open(DATA / "basketball1.png").crop((0, 0, 640, 460)).save(path)
    person, pose = Person(Person.Params(stage="person")), Pose(Pose.Params(stage="pose", min_score=0.3))
    posed_cut = run_stage(pose, run_stage(person, [decoded(path)]))
    kp = np.array(posed_cut[0].ann["persons"][0]["keypoints"])
    assert kp[K.INDEX["right_big_toe"], 2] == 0 and kp[K.INDEX["right_heel"], 2] > 0.3
    out = run_stage(Shoes(Shoes.Params(stage="shoes")), posed_cut)[0]
    assert (out.status, out.reason) == ("dropped", "shoe cut off by the frame (person 0 left, person 0 right)")
    # Kept on request: every shoe it kept is flagged, and the right foot is not counted as lost.
    kept = run_stage(Shoes(Shoes.Params(stage="shoes", cut_off="keep")), posed_cut)[0]
    assert kept.live and kept.ann["shoes"] and all(r["touches_border"] for r in kept.ann["shoes"])


def test_a_seen_foot_without_a_shoe_mask_drops_the_image(posed):
    """A mask threshold no shoe reaches: the feet are seen, the masks are not kept."""
    out = run_stage(Shoes(Shoes.Params(stage="shoes", cut_off="keep", min_pixels=10_000)), [posed["basketball"]])[0]
    assert (out.status, out.reason) == ("dropped", "no shoe mask for a visible foot (person 0 left)")
    lenient = Shoes(Shoes.Params(stage="shoes", cut_off="keep", min_pixels=10_000, require_every_foot=False))
    out = run_stage(lenient, [posed["basketball"]])[0]
    assert out.status == "dropped" and out.reason.startswith("no shoe found at the feet (2 feet seen")


def test_more_than_two_shoes_drops_the_image(posed):
    """Two players side by side: basketball1's left half next to its mirror image (4 feet)."""
    s = posed["basketball"]
    rgb = s.rgb()
    half = rgb[:, :320]
    pair = np.ascontiguousarray(np.hstack([half, half[:, ::-1]]))
    sample = decoded(DATA / "basketball1.png")
    sample.set_image(_png(pair), pair)
    p0 = s.ann["persons"][0]
    mirrored = np.array(p0["keypoints"])
    seen = mirrored[:, 2] > 0
    mirrored[seen, 0] = 639 - mirrored[seen, 0]
    sample.ann["persons"] = [p0, {**p0, "keypoints": mirrored.tolist()}]
    out = run_stage(Shoes(Shoes.Params(stage="shoes", cut_off="keep")), [sample])[0]
    assert out.status == "dropped" and out.reason == "more than 2 shoes (4)"
    assert out.metrics["shoes"] == 4


def test_products_shoe_masks_are_used_when_the_products_stage_found_shoes(posed):
    """With a shoe-prompted products stage (grounding-dino + sam) the shoes come from its masks."""
    s = posed["basketball"]
    sample = decoded(DATA / "basketball1.png")
    sample.ann["persons"] = s.ann["persons"]
    truth = traced_shoe(s.rgb().shape[:2])
    ids = np.zeros(truth.shape, np.uint8)
    ids[truth] = 1
    ids[20:120, 400:500] = 2  # a wall poster the detector called "product": not a shoe
    sample.members["mask.png"] = encode_mask(ids)
    sample.ann["products"] = [
        {"label": "sneaker", "mask_index": 1, "source": "sam"},
        {"label": "product", "mask_index": 2, "source": "sam"},
    ]
    # cut_off keep: the right shoe (no product mask here) runs out of the frame and is let go.
    out = run_stage(Shoes(Shoes.Params(stage="shoes", cut_off="keep")), [sample])[0]
    assert out.live, out.reason
    assert [(r["side"], r["source"], r["product_index"], r["area"]) for r in out.ann["shoes"]] == [
        ("left", "products:sam", 1, int(truth.sum()))
    ]
    assert np.array_equal(rgba_of(out)[..., 3] > 0, truth)


def test_a_shoe_pair_in_one_product_mask_is_split_between_the_feet(kept, posed):
    """GroundingDINO + SAM often give "shoes" as one mask: it is split, one shoe per foot."""
    s = posed["basketball"]
    pair = np.zeros(s.rgb().shape[:2], bool)
    shoemask = decode_mask(kept["basketball"].members["shoemask.png"])
    pair[shoemask > 0] = True  # both keypoint-seeded shoes as one mask
    left, right = (shoemask == i for i in (1, 2))
    sample = decoded(DATA / "basketball1.png")
    sample.ann["persons"] = s.ann["persons"]
    sample.members["mask.png"] = encode_mask(pair.astype(np.uint8))
    sample.ann["products"] = [{"label": "shoes", "mask_index": 1, "source": "sam"}]
    out = run_stage(Shoes(Shoes.Params(stage="shoes", source="products", cut_off="keep")), [sample])[0]
    assert out.live, out.reason
    shoes = out.ann["shoes"]
    assert sorted(r["side"] for r in shoes) == ["left", "right"] and all(r["source"] == "products:sam+split" for r in shoes)
    assert sum(r["area"] for r in shoes) == int(pair.sum())  # every pixel of the pair goes to one shoe
    ids = decode_mask(out.members["shoemask.png"])
    by_side = {r["side"]: ids == i for i, r in enumerate(shoes, start=1)}
    # Each part is mostly its own foot's shoe (the keypoint-seeded masks are the reference here).
    for side, truth in (("left", left if kept["basketball"].ann["shoes"][0]["side"] == "left" else right),
                        ("right", right if kept["basketball"].ann["shoes"][0]["side"] == "left" else left)):  # fmt: skip
        assert (by_side[side] & truth).sum() / by_side[side].sum() > 0.9


def test_shoe_crop_is_a_square_around_both_shoes_with_foot_points_in_crop_pixels(kept):
    s = kept["basketball"]
    crop = np.asarray(Image.open(io.BytesIO(s.members["shoecrop.png"])))
    assert crop.shape == (256, 256, 4) and crop[..., 3].any()
    doc = json.loads(s.members["leg.json"])
    c = doc["crop"]
    assert c == s.ann["shoe_crop"] and c["size"] == 256
    x0, y0, x1, y1 = c["box"]
    assert x1 - x0 == pytest.approx(y1 - y0)
    alpha = rgba_of(s)[..., 3] > 0
    ys, xs = np.nonzero(alpha)
    assert x0 <= xs.min() and y0 <= ys.min() and x1 >= xs.max() and y1 >= ys.max()  # both shoes inside
    foot = np.array(c["foot"])
    seen = foot[:, 2] > 0.3
    image_points = np.array(doc["persons"][c["person"]]["foot"])[seen, :2]
    assert np.allclose(foot[seen, :2], (image_points - [x0, y0]) * 256 / (x1 - x0), atol=0.05)
    # The seen big toes (SHOE_FOOT order: 2 left, 5 right) land on the cropped shoe, within a few pixels.
    toes = [i for i in (2, 5) if seen[i]]
    assert toes
    for x, y in foot[toes, :2]:
        xi, yi = int(round(x)), int(round(y))
        assert crop[max(0, yi - 6) : yi + 7, max(0, xi - 6) : xi + 7, 3].any()


def test_registered_and_in_the_recipe():
    from hoiforge.pipeline.recipe import load_recipe

    assert stage_class("shoes") is Shoes
    r = load_recipe("shoeleg")
    names = r.stage_names()
    assert names.index("pose") < names.index("shoes") and names.index("products") < names.index("shoes")
    pose = next(p for p in r.stages if p.stage == "pose")
    shoes = next(p for p in r.stages if p.stage == "shoes")
    assert pose.leg_json and shoes.max_shoes == 2 and shoes.cut_off == "drop"
    assert {"shoe.png", "wear.png"} <= set(Shoes(shoes).members) and "leg.json" in Pose(pose).members


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()
