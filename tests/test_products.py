"""products stage on the fixture photos: worn-held (default) and the salient ``embedded`` backend; instance maps; edges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hoiforge.datasets.images import decode_rgb, encode_png
from hoiforge.datasets.masks import decode_mask, encode_mask
from hoiforge.errors import BackendUnavailable
from hoiforge.models.tasks import Product
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.base import Sample
from hoiforge.stages.edges import Edges
from hoiforge.stages.products import HOIHUMAN_PROMPT, Products, instance_map
from hoiforge.stages.testing import decoded

DATA = Path(__file__).parent / "data"
MAX_PERSON_OVERLAP = 0.05  # a product may share at most this fraction of its pixels with a person


def products_stage(**params) -> Products:
    return Products(Products.Params(stage="products", **params))


@pytest.fixture(scope="module")
def stage() -> Products:
    return products_stage(detector="embedded")


@pytest.fixture(scope="module")
def ran(stage) -> dict[str, Sample]:
    """coffee, astronaut and basketball1 through the salient backend's Arrow entry point, in one batch."""
    names = ("coffee.png", "astronaut.png", "basketball1.png")
    out = run_stage(stage, [decoded(DATA / n, i) for i, n in enumerate(names)])
    return dict(zip(names, out, strict=True))


def person_mask(path: Path) -> np.ndarray:
    """An independent person mask: mediapipe pose segmentation run on the full-size photo."""
    import mediapipe as mp

    rgb = decode_rgb(path.read_bytes())
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True) as pose:
        result = pose.process(rgb)
    assert result.segmentation_mask is not None, "fixture must show a person"
    return result.segmentation_mask > 0.5


def person_boxes(path: Path, stage_boxes: list[list[float]]) -> list[list[float]]:
    """A person's box, three ways: the person stage's (mediapipe: the box of the visible landmarks,
    which ends at the eyes and at the lowest visible joint); the box of an independent person mask
    (mediapipe pose segmentation on the full photo: hair, hat and the garments below the last
    joint, of the one person it sees); and, per person stage box, the box of the pose segmentation
    of the photo below it (the box grown by half its width each side, from a box height above it to
    the image's bottom: the rest of a person whose box ends at the shoulders, in a group photo)."""
    import mediapipe as mp

    rgb = decode_rgb(path.read_bytes())
    w = rgb.shape[1]
    ys, xs = np.nonzero(person_mask(path))
    boxes = [*stage_boxes, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
    for x0, y0, x1, y1 in stage_boxes:
        a, b = max(0, int(x0 - (x1 - x0) / 2)), max(0, int(y0 - (y1 - y0)))
        c = min(w, int(x1 + (x1 - x0) / 2))
        with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True) as pose:
            seg = pose.process(np.ascontiguousarray(rgb[b:, a:c])).segmentation_mask
        if seg is not None and (seg > 0.5).any():
            ys, xs = np.nonzero(seg > 0.5)
            boxes.append([a + xs.min(), b + ys.min(), a + xs.max() + 1, b + ys.max() + 1])
    return boxes


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_coffee_cup_is_one_product_matching_the_hand_traced_mask(ran):
    s = ran["coffee.png"]
    assert s.live, s.reason
    assert len(s.ann["products"]) == 1
    ids = decode_mask(s.members["mask.png"])
    truth = np.asarray(Image.open(DATA / "coffee_cup_mask.png")) > 0
    assert ids.shape == truth.shape
    assert iou(ids == 1, truth) >= 0.8
    p = s.ann["products"][0]
    assert p["label"] == "product" and p["mask_index"] == 1
    assert p["area"] == int((ids == 1).sum())
    assert s.metrics["products"] == 1 and s.metrics["product_label"] == "product"
    assert s.metrics["product_area"] == pytest.approx(p["area"] / ids.size, abs=1e-4)
    x0, y0, x1, y1 = p["box"]
    cx0, cy0, cx1, cy1 = p["close_view"]  # a square around the box; it may run past the image (padded white)
    assert cx0 <= x0 and cy0 <= y0 and x1 <= cx1 and y1 <= cy1 and cx1 - cx0 == pytest.approx(cy1 - cy0)
    assert s.ann["stages"]["products"]["backend"] == "embedded+embedded"


PEOPLE = ("astronaut.png", "basketball1.png", "basketball2.png", "messi5.jpg", "grace_hopper.jpg", "camera.png", "drinks.jpg")
WORN = {"clothes-upper", "clothes-lower", "shoes", "headwear"}


@pytest.fixture(scope="module")
def worn() -> dict[str, Sample]:
    """The people photos and coffee through person + products (worn-held, the default) in one batch."""
    from hoiforge.stages.person import Person

    names = (*PEOPLE, "coffee.png")
    persons = run_stage(Person(Person.Params(stage="person")), [decoded(DATA / n, i) for i, n in enumerate(names)])
    out = run_stage(products_stage(), persons)
    return dict(zip(names, out, strict=True))


def grown(box, frac: float, shape) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    dx, dy = frac * (x1 - x0) / 2, frac * (y1 - y0) / 2
    return max(0, int(x0 - dx)), max(0, int(y0 - dy)), min(shape[1], int(np.ceil(x1 + dx))), min(shape[0], int(np.ceil(y1 + dy)))


def test_worn_held_products_lie_on_persons(worn):
    """Never the background: every kept product's mask is >= 50 % inside a person's box grown by 10 %
    (a person's box: see ``person_boxes``)."""
    kept = 0
    for name in PEOPLE:
        s = worn[name]
        assert s.live, f"{name}: {s.reason}"
        ids = decode_mask(s.members["mask.png"])
        boxes = person_boxes(DATA / name, [q["box"] for q in s.ann["persons"]])
        for i, q in enumerate(s.ann["products"], start=1):
            mask = ids == i
            share = max(mask[y0:y1, x0:x1].sum() / mask.sum() for x0, y0, x1, y1 in (grown(b, 0.1, ids.shape) for b in boxes))
            assert share >= 0.5, f"{name}: product {i} ({q['label']}) only {share:.2f} inside a person box"
            assert q["label"] in WORN | {"held-object"} and q["source"] == "worn-held"
            kept += 1
    assert kept >= 2 * len(PEOPLE)  # at least an upper and a lower garment (or a hat, or a held object) each


def test_image_without_a_person_has_no_product(worn):
    s = worn["coffee.png"]  # a cup on a table, nobody wearing or holding it
    assert s.status == "dropped" and s.stage in ("person", "products")


def test_upper_garment_covers_the_jacket(worn):
    s = worn["grace_hopper.jpg"]
    ids = decode_mask(s.members["mask.png"])
    truth = np.asarray(Image.open(DATA / "grace_hopper_jacket_mask.png")) > 0  # traced by hand, see SOURCES.md
    [upper] = [i for i, q in enumerate(s.ann["products"], start=1) if q["label"] == "clothes-upper"]
    assert iou(ids == upper, truth) >= 0.6
    # the face and the white collar around the neck are not the garment
    assert ids[200, 256] != upper and ids[380, 255] != upper


def test_headwear_is_the_cap_and_hair_is_not_headwear(worn):
    """grace_hopper: a navy cap over white hair (the cap lies in x 140-380, y 10-180); the
    astronaut's and the footballer's hair is not a hat."""
    s = worn["grace_hopper.jpg"]
    ids = decode_mask(s.members["mask.png"])
    [cap] = [i for i, q in enumerate(s.ann["products"], start=1) if q["label"] == "headwear"]
    mask = ids == cap
    assert mask[10:180, 140:380].sum() / mask.sum() >= 0.95
    assert mask[100:140, 180:340].mean() >= 0.6  # the cap's dark band (its white crown matches her white hair: missed)
    for name in ("astronaut.png", "messi5.jpg", "drinks.jpg"):  # drinks: lit brown hair on top of a dark-haired head
        assert "headwear" not in [q["label"] for q in worn[name].ann["products"]], name


def test_held_object_is_found_at_the_hand(worn):
    """basketball2: the man holds a ball up on his palm; the ball is a disk of radius ~38 at (164, 111).

    The held object must lie on the ball (not the wall or the door behind it) and cover a good
    part of it; mediapipe's motion-blurred grey ball gives a partial mask (docs/products.md)."""
    s = worn["basketball2.png"]
    ids = decode_mask(s.members["mask.png"])
    held = [i for i, q in enumerate(s.ann["products"], start=1) if q["label"] == "held-object"]
    assert len(held) == 1, [q["label"] for q in s.ann["products"]]
    yy, xx = np.mgrid[: ids.shape[0], : ids.shape[1]]
    ball = (xx - 164) ** 2 + (yy - 111) ** 2 <= 40**2
    mask = ids == held[0]
    assert (mask & ball).sum() / mask.sum() >= 0.9, "the held object runs off the ball"
    assert (mask & ball).sum() / ball.sum() >= 0.25, "the held object covers too little of the ball"


def test_held_glass_is_found_in_the_hand():
    """drinks.jpg: the woman on the left holds a glass with a red drink at her chest; her hand,
    wrapped round it, is one holistic misses (found by the second look at the wrist).

    The held object must lie on the glass (hand-traced, tests/data/drinks_glass_mask.png), not on
    her cream jacket or black top around it, and cover a good part of it: the clear rim above the
    drink is as light as the jacket behind it and is missed (docs/products.md)."""
    from hoiforge.stages.person import Person

    [person] = run_stage(Person(Person.Params(stage="person")), [decoded(DATA / "drinks.jpg", 0)])
    [s] = run_stage(products_stage(min_area=0.002), [person])  # the hoihuman recipe's floor
    ids = decode_mask(s.members["mask.png"])
    held = [i for i, q in enumerate(s.ann["products"], start=1) if q["label"] == "held-object"]
    assert len(held) == 1, [q["label"] for q in s.ann["products"]]
    glass = np.asarray(Image.open(DATA / "drinks_glass_mask.png")) > 0
    mask = ids == held[0]
    assert (mask & glass).sum() / mask.sum() >= 0.9, "the held object runs off the glass"
    assert (mask & glass).sum() / glass.sum() >= 0.3, "the held object covers too little of the glass"


def test_a_shirt_below_a_shoulder_high_box_is_found_whole(worn):
    """drinks.jpg: the person stage's box of the middle woman ends at her shoulders; her black
    shirt goes on to the image's bottom (y 340-900 around x 660-900). The crop is redone taller
    when the person segmentation runs out of its bottom, so the garment reaches well below the box."""
    s = worn["drinks.jpg"]
    ids = decode_mask(s.members["mask.png"])
    shirts = [
        i for i, q in enumerate(s.ann["products"], start=1) if q["label"] == "clothes-upper" and 640 < (q["box"][0] + q["box"][2]) / 2 < 900
    ]
    assert len(shirts) == 1, [(q["label"], q["box"]) for q in s.ann["products"]]
    ys = np.nonzero(ids == shirts[0])[0]
    assert ys.max() >= 700, f"the shirt stops at y {ys.max()}"


def test_shoes_are_the_boots_when_small_products_are_allowed():
    """messi5: the boots are ~0.1 % of the image each, under the default min_area (0.5 %); with
    min_area 0.001 the shoes product is the two boots (near (280, 322) and (432, 272))."""
    from hoiforge.models.worn_held import WornHeldDetector

    rgb = decode_rgb((DATA / "messi5.jpg").read_bytes())
    detector = WornHeldDetector(min_area=0.001)
    try:
        [found] = detector.detect([rgb])
    finally:
        detector.close()
    [shoes] = [p.mask for p in found if p.label == "shoes"]
    near, far = shoes[300:340, 245:315].sum(), shoes[250:295, 400:462].sum()
    assert (near + far) / shoes.sum() >= 0.9, "the shoes product runs off the boots"
    assert min(near, far) / shoes.sum() >= 0.2, "one boot is missing"


def test_worn_held_options_are_typed_and_pick_kinds(tmp_path):
    from hoiforge.models import registry

    b = registry.backend("product-detector", "worn-held")
    with pytest.raises(ValueError, match="kinds"):
        registry.validate_options(b, {"kinds": ["clothes-upper", "curtain"]})
    with pytest.raises(ValueError, match="max_held_area"):
        registry.validate_options(b, {"max_held_area": 2})
    with pytest.raises(ValueError, match="min_held_area"):
        registry.validate_options(b, {"min_held_area": -0.1})
    from hoiforge.models.worn_held import WornHeldDetector

    rgb = decode_rgb((DATA / "grace_hopper.jpg").read_bytes())
    only = WornHeldDetector(kinds=("clothes-upper",))
    try:
        [found] = only.detect([rgb])  # no person boxes given: it finds the person itself
    finally:
        only.close()
    assert [p.label for p in found] == ["clothes-upper"]


def test_astronaut_helmet_is_a_product_and_not_the_person(ran):
    s = ran["astronaut.png"]
    assert s.live, s.reason
    ids = decode_mask(s.members["mask.png"])
    # The helmet: the black dome at the bottom right (its visor highlight is near (355, 440)).
    helmet_id = int(ids[440, 390])
    assert helmet_id > 0, "no product covers the helmet"
    yy, xx = np.mgrid[: ids.shape[0], : ids.shape[1]]
    dome = (xx - 390) ** 2 + (yy - 440) ** 2 <= 50**2  # a disk inside the helmet's dome
    assert (ids[dome] == helmet_id).mean() >= 0.9, "the helmet is not one product"
    # (the embedded backend merges it with the black stand behind it: same colour, touching)
    assert ids[120, 225] == 0 and ids[300, 130] == 0 and ids[450, 100] == 0, "the face or the suit became a product"


@pytest.mark.parametrize("name", ["astronaut.png", "basketball1.png"])
def test_products_do_not_overlap_the_person(ran, name):
    s = ran[name]
    person = person_mask(DATA / name)
    ids = decode_mask(s.members["mask.png"]) if s.members.get("mask.png") else None
    assert ids is not None and ids.max() >= 1
    for i in range(1, int(ids.max()) + 1):
        mask = ids == i
        assert (mask & person).sum() / mask.sum() <= MAX_PERSON_OVERLAP, f"product {i} overlaps the person"


def test_image_without_product_is_dropped_with_reason_or_kept_when_configured(tmp_path):
    plain = tmp_path / "plain.png"
    rng = np.random.default_rng(0)
    Image.fromarray((np.full((300, 400, 3), 180) + rng.integers(-3, 4, (300, 400, 3))).astype(np.uint8)).save(plain)
    dropped = run_stage(products_stage(), [decoded(plain)])[0]
    assert dropped.status == "dropped" and dropped.stage == "products"
    assert "0 products" in dropped.reason and "worn-held" in dropped.reason
    kept = run_stage(products_stage(drop_if_none=False), [decoded(plain)])[0]
    assert kept.live and kept.ann["products"] == [] and kept.metrics["products"] == 0
    assert not kept.members.get("mask.png")


def test_edges_stay_inside_the_product_mask(ran):
    s = ran["coffee.png"]
    out = run_stage(Edges(Edges.Params(stage="edges")), [s])[0]
    edges = np.asarray(Image.open(__import__("io").BytesIO(out.members["edge.png"])))
    ids = decode_mask(out.members["mask.png"])
    assert edges.any() and not edges[ids == 0].any()


def test_edges_read_16_bit_instance_maps(tmp_path):
    """More than 255 products: ids above 255 must still count as product pixels."""
    s = decoded(DATA / "coffee.png")
    ids = np.zeros((400, 600), np.uint16)
    ids[:, 300:] = 300  # one product with id 300, right half
    s.members["mask.png"] = encode_mask(ids)
    out = run_stage(Edges(Edges.Params(stage="edges")), [s])[0]
    edges = np.asarray(Image.open(__import__("io").BytesIO(out.members["edge.png"])))
    assert edges[:, 300:].any() and not edges[:, :300].any()


def test_instance_maps_round_trip_8_and_16_bit():
    small = np.arange(12).reshape(3, 4) % 5
    big = np.arange(12).reshape(3, 4) * 100
    assert decode_mask(encode_mask(small)).dtype == np.uint8
    assert (decode_mask(encode_mask(small)) == small).all()
    assert decode_mask(encode_mask(big)).dtype == np.uint16
    assert (decode_mask(encode_mask(big)) == big).all()
    assert (decode_mask(encode_png((small > 0).astype(np.uint8) * 255)) > 0).sum() == (small > 0).sum()


def test_instance_map_paints_best_first_and_skips_duplicates():
    a = np.zeros((10, 10), bool)
    a[2:8, 2:8] = True
    dup = a.copy()
    dup[2, 2] = False
    b = np.zeros((10, 10), bool)
    b[5:10, 5:10] = True
    ps = [
        Product((2, 2, 8, 8), 0.9, "cup", mask=a),
        Product((2, 2, 8, 8), 0.8, "cup", mask=dup),
        Product((5, 5, 10, 10), 0.7, "book", mask=b),
    ]
    ids, kept = instance_map(ps, (10, 10), min_pixels=2, nms_iou=0.7, limit=5)
    assert [p.label for p in kept] == ["cup", "book"]
    assert (ids[a] == 1).all() and (ids[b & ~a] == 2).all() and (ids[~(a | b)] == 0).all()
    _, one = instance_map(ps, (10, 10), min_pixels=2, nms_iou=0.7, limit=1)
    assert len(one) == 1


def test_close_view_is_a_grown_square_around_the_box():
    from hoiforge.datasets.views import square_box

    assert square_box((10, 20, 50, 60), 0.25) == [0.0, 10.0, 60.0, 70.0]
    assert square_box((0, 0, 100, 50), 0.25) == [-25.0, -50.0, 125.0, 100.0]  # past the image: padded when cropped


def test_params_and_preflight_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'sem'; choose one of: embedded, sam, hf-sam"):
        Products.Params(stage="products", segmenter="sem")
    with pytest.raises(ValueError):
        Products.Params(stage="products", min_products=3, max_products=2)
    with pytest.raises(ValueError, match="unknown backend 'yolo-world'; choose one of: worn-held, embedded, grounding-dino"):
        products_stage(detector="yolo-world")
    with pytest.raises(BackendUnavailable, match="checkpoint"):
        products_stage(segmenter={"backend": "sam", "options": {"checkpoint": str(tmp_path / "missing.pth")}}).preflight()
    with pytest.raises(BackendUnavailable, match="Hugging Face cache"):
        products_stage(detector={"backend": "grounding-dino", "options": {"model": "nobody/no-such-model"}}).preflight()
    products_stage().preflight()  # worn-held: mediapipe is installed here
    products_stage(detector="embedded").preflight()


def test_recipes_carry_the_papers_prompts():
    from hoiforge.pipeline.recipe import load_recipe

    hoi = next(s for s in load_recipe("hoihuman").stages if s.stage == "products")
    assert hoi.prompt == HOIHUMAN_PROMPT
    assert HOIHUMAN_PROMPT.startswith("cosmetics, clothes, shoes") and HOIHUMAN_PROMPT.endswith("phone, book")
    shoe = next(s for s in load_recipe("shoeleg").stages if s.stage == "products")
    assert shoe.prompt == "shoe, sneaker, boot, sandal, high heels"
    names = [s.stage for s in load_recipe("hoihuman").stages]
    assert names.index("products") < names.index("edges")


def test_segment_service_masks_a_given_box_and_a_prompt():
    """Eval's OER entry point, same backend code: box-prompted GrabCut and the full detector."""
    from hoiforge.models.segment_service import ProductSegmenter, segment

    rgb = decode_rgb((DATA / "coffee.png").read_bytes())
    truth = np.asarray(Image.open(DATA / "coffee_cup_mask.png")) > 0
    ys, xs = np.nonzero(truth)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    service = ProductSegmenter(detector="embedded")
    [[by_box]] = segment([rgb], boxes=[[box]], service=service)
    assert by_box.shape == truth.shape and iou(by_box, truth) >= 0.8
    [by_prompt] = segment([rgb], prompt="cup", service=service)
    assert len(by_prompt) == 1 and iou(by_prompt[0], truth) >= 0.8
    with pytest.raises(ValueError):
        segment([rgb], boxes=[[box]], prompt="cup", service=service)
