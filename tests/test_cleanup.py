"""cleanup stage on real photos: overlays removed and inpainted, printed text kept per the policy."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw, ImageFont

from hoiforge.datasets.images import decode_rgb, encode_png
from hoiforge.errors import BackendUnavailable
from hoiforge.models.ocr import RapidOCRReader
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages import stage_class
from hoiforge.stages.cleanup import Cleanup, removal_mask
from hoiforge.stages.person import Person
from hoiforge.stages.testing import decoded
from tests.overlays import DATA, changed_pixels, png_bytes, print_on, sale_overlay, unreadable_watermark

pytest.importorskip("rapidocr_onnxruntime")


def sample_of(img: Image.Image, tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_bytes(png_bytes(img))
    return decoded(path)


@pytest.fixture(scope="module")
def default_cleanup():
    return Cleanup(Cleanup.Params(stage="cleanup"))  # the recipe defaults: rapidocr + patchmatch


@pytest.fixture(scope="module")
def person():
    pytest.importorskip("mediapipe")
    return Person(Person.Params(stage="person"))


@pytest.fixture(scope="module")
def reader():
    return RapidOCRReader()


def read_text(reader, data: bytes) -> str:
    return " ".join(r.text for r in reader.read([decode_rgb(data)])[0]).upper().replace(" ", "")


def test_overlay_and_watermark_are_removed_and_nothing_else_changes(default_cleanup, person, reader, tmp_path):
    clean = np.asarray(Image.open(DATA / "astronaut.png").convert("RGB"))
    drawn = sale_overlay()
    s = run_stage(person, [sample_of(drawn, tmp_path, "sale.png")])[0]
    before = s.image
    (s,) = run_stage(default_cleanup, [s])
    assert s.live, s.reason

    rules = {r["text"].upper().replace(" ", ""): (r["action"], r["rule"]) for r in s.ann["text_regions"]}
    assert rules["SALE50%OFF"] == ("removed", "overlay banner")  # lies over the person, still removed
    assert rules["SHOPMARK"] == ("removed", "corner watermark")
    cleanup = s.ann["cleanup"]
    assert cleanup["ocr"] == "rapidocr" and cleanup["inpaint"] == "patchmatch" and cleanup["removed"] == 2
    assert s.metrics["text_removed"] == 2 and 0 < s.metrics["cleanup_fraction"] == cleanup["fraction"] < 0.2
    assert s.ann["stages"]["cleanup"]["backend"] == "rapidocr+patchmatch"

    # The image changed, is still a PNG, and says why.
    assert s.image != before and s.image[:8] == b"\x89PNG\r\n\x1a\n" and s.ann["image"]["reencoded"] == "cleanup"
    still_read = read_text(reader, s.image)
    assert not any(word in still_read for word in ("SALE", "OFF", "SHOPMARK")), still_read

    # Pixels outside the recorded, dilated masks are exactly the input's.
    removed = [r["polygon"] for r in s.ann["text_regions"] if r["action"] == "removed"]
    mask = removal_mask(removed, clean.shape[:2], cleanup["margin_px"], cleanup["margin_rel"])
    after = decode_rgb(s.image)
    assert np.array_equal(after[mask == 0], np.asarray(drawn)[mask == 0])
    assert abs(float((mask > 0).mean()) - cleanup["fraction"]) < 1e-4
    # Every drawn pixel was inside the mask, and the fill there is close to the clean photo.
    text_pixels = changed_pixels(drawn, clean)
    assert (mask[text_pixels] > 0).all()
    error = lambda img: np.abs(np.asarray(img, dtype=int) - clean.astype(int))[text_pixels].mean()
    assert error(after) < 0.6 * error(drawn)


def test_text_printed_on_clothing_is_kept_and_the_bytes_untouched(person, reader, tmp_path):
    suit = print_on("astronaut.png", "NASA", at=(100, 300), size=34)  # on the orange suit's shoulder
    s = run_stage(person, [sample_of(suit, tmp_path, "suit.png")])[0]
    assert s.ann["persons"], "the person stage must find the astronaut for this test"
    source = s.image

    keep = Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea"))
    (kept,) = run_stage(keep, [s])
    (region,) = kept.ann["text_regions"]
    assert region["text"] == "NASA" and (region["action"], region["rule"]) == ("kept", "on clothing")
    assert kept.image == source and kept.ann["image"]["reencoded"] is None and kept.metrics["text_removed"] == 0

    # The person box is what keeps it: without that rule the same text is scene text, removed.
    strict = Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea", policy={"keep_on_persons": False}))
    (removed,) = run_stage(strict, [s])
    assert (removed.ann["text_regions"][0]["action"], removed.ann["text_regions"][0]["rule"]) == ("removed", "scene text")
    assert removed.image != source and "NASA" not in read_text(reader, removed.image)


def test_brand_on_a_product_is_kept_when_the_product_mask_covers_it(tmp_path):
    import cv2

    # A shop's banner and mark over the photo, and a brand printed on the cup.
    cup = print_on(sale_overlay("coffee.png"), "BREW", at=(290, 240), size=28, colour=(250, 250, 250))
    s = sample_of(cup, tmp_path, "cup.png")
    instance_ids = np.zeros((400, 600), np.uint8)
    cv2.ellipse(instance_ids, (278, 225), (205, 165), 0, 0, 360, 1, -1)  # cup and saucer = product 1
    stage = Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea"))

    on_product = decoded(tmp_path / "cup.png")
    on_product.members["mask.png"] = encode_png(instance_ids)
    (out,) = run_stage(stage, [on_product])
    rules = {r["text"].upper().replace(" ", ""): (r["action"], r["rule"]) for r in out.ann["text_regions"]}
    assert rules == {
        "SALE50%OFF": ("removed", "overlay banner"),  # laid over the product, still an overlay
        "BREW": ("kept", "on product"),
        "SHOPMARK": ("removed", "corner watermark"),
    }
    assert out.image != s.image and out.members["mask.png"] == on_product.members["mask.png"]

    (no_mask,) = run_stage(stage, [s])  # no products stage ran: nothing says BREW is printed on the cup
    brew = next(r for r in no_mask.ann["text_regions"] if r["text"] == "BREW")
    assert (brew["action"], brew["rule"]) == ("removed", "scene text") and no_mask.metrics["text_removed"] == 3


def test_scene_text_follows_the_policy_and_jpeg_stays_jpeg(reader):
    sign = decoded(DATA / "scenetext01.jpg")
    source = sign.image

    (cleaned,) = run_stage(Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea", quality=90)), [sign])
    assert cleaned.live and cleaned.ann["cleanup"]["removed"] >= 4
    decided = [r for r in cleaned.ann["text_regions"] if r["action"] != "ignored"]
    assert {r["rule"] for r in decided} == {"scene text"}  # a street sign: no person, no border
    for r in cleaned.ann["text_regions"]:  # what is ignored was neither read nor confidently detected
        assert (r["action"] == "ignored") == (r["score"] < 0.5), r
    assert cleaned.image[:3] == b"\xff\xd8\xff" and cleaned.ann["image"]["ext"] == "jpg"
    with Image.open(io.BytesIO(cleaned.image)) as img:
        assert img.size == (800, 600)
    still_read = read_text(reader, cleaned.image)
    assert "PARKING" not in still_read and "NOTICE" not in still_read, still_read

    (kept,) = run_stage(
        Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea", policy={"scene_text": "keep"})), [decoded(DATA / "scenetext01.jpg")]
    )
    assert kept.image == source and {r["action"] for r in kept.ann["text_regions"]} <= {"kept", "ignored"}

    (dropped,) = run_stage(
        Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea", max_fraction=0.02)), [decoded(DATA / "scenetext01.jpg")]
    )
    assert dropped.status == "dropped" and dropped.stage == "cleanup" and "cover" in dropped.reason
    assert dropped.image is None and dropped.metrics["cleanup_fraction"] > 0.02


def test_a_photo_without_text_keeps_its_source_bytes(default_cleanup):
    s = decoded(DATA / "coffee.png")
    (out,) = run_stage(default_cleanup, [s])
    assert out.image == s.image and out.ann["cleanup"]["removed"] == 0 and out.metrics["cleanup_fraction"] == 0
    # PP-OCR finds one box on the cup's pattern (det ~0.68, nothing read): recorded, ignored, not inpainted.
    assert all(r["action"] == "ignored" for r in out.ann["text_regions"])
    assert out.metrics["text_ignored"] == out.metrics["text_regions"] == len(out.ann["text_regions"])


def test_greyscale_photo_stays_greyscale(tmp_path):
    grey = Image.open(DATA / "basketball1.png").convert("L")
    ImageDraw.Draw(grey).text(
        (630, 470), "shopmark", fill=255, anchor="rd", font=ImageFont.load_default(size=26), stroke_width=2, stroke_fill=0
    )
    path = tmp_path / "grey.png"
    grey.save(path)
    (out,) = run_stage(Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea")), [decoded(path)])
    assert out.live and out.metrics["text_removed"] >= 1
    with Image.open(io.BytesIO(out.image)) as img:
        assert img.mode == "L"


def test_preflight_and_recipe():
    with pytest.raises(BackendUnavailable, match="big-lama.pt"):
        Cleanup(Cleanup.Params(stage="cleanup", inpaint="lama")).preflight()
    with pytest.raises(ValueError, match="unknown backend 'tesseract'; choose one of: rapidocr, paddleocr"):
        Cleanup.Params(stage="cleanup", ocr="tesseract")
    Cleanup(Cleanup.Params(stage="cleanup")).preflight()
    assert stage_class("cleanup") is Cleanup
    with pytest.raises(Exception, match="extra"):
        Cleanup.Params(stage="cleanup", policy={"keep_on_shoes": True})

    # The bundled recipe: cleanup after the stages whose boxes/masks inform the policy, before
    # the ones that describe the image. Read as YAML so that this test does not depend on the
    # other stages of the recipe being importable.
    entries = yaml.safe_load((resources.files("hoiforge") / "recipes" / "hoihuman.yaml").read_text())["stages"]
    names = [e["stage"] for e in entries]
    assert names.index("cleanup") > names.index("person")
    assert all(names.index(n) > names.index("cleanup") for n in ("pose", "caption", "edges") if n in names)
    if "products" in names:
        assert names.index("products") < names.index("cleanup")
    params = Cleanup.Params.model_validate(entries[names.index("cleanup")])
    assert (params.ocr.backend, params.inpaint.backend) == ("rapidocr", "patchmatch")
    Cleanup(params).preflight()


# -- detection scores decide, not only recognised text (issue 18) -------------------------------
def test_a_watermark_the_recogniser_cannot_read_is_removed_on_its_detection_box(tmp_path):
    marked = unreadable_watermark()
    clean = np.asarray(Image.open(DATA / "astronaut.png").convert("RGB"))
    mark_pixels = changed_pixels(marked, clean)
    s = sample_of(marked, tmp_path, "mirrored.png")
    stage = Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea"))
    recognition_only = Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea", policy={"min_det_score": 1.0}))
    (out,) = run_stage(stage, [s])
    (region,) = out.ann["text_regions"]
    assert region["score"] < 0.5 and region["det_score"] >= 0.7  # unreadable, but confidently detected
    assert (region["action"], region["rule"]) == ("removed", "border watermark")
    after = decode_rgb(out.image)
    assert (
        np.abs(after.astype(int) - clean.astype(int))[mark_pixels].mean()
        < 0.5 * np.abs(np.asarray(marked).astype(int) - clean.astype(int))[mark_pixels].mean()
    )  # the mark is (mostly) gone

    (old,) = run_stage(recognition_only, [decoded(tmp_path / "mirrored.png")])  # deciding on recognised text alone
    (region,) = old.ann["text_regions"]
    assert (region["action"], region["rule"]) == ("ignored", "low score") and old.image == s.image
    assert old.metrics["text_ignored"] == 1 and old.metrics["text_removed"] == 0


# -- products re-checked after inpainting (issue 18) --------------------------------------------
def with_products(tmp_path: Path, name: str, logo_only: bool = False):
    """coffee.png with the shop overlay; products: the cup (unless logo_only) and the corner logo
    (a detector that took the shop's mark for a product)."""
    import cv2

    from hoiforge.datasets.views import crop_square, encode_strip, square_box

    drawn = sale_overlay("coffee.png")
    logo = changed_pixels(drawn, Image.open(DATA / "coffee.png").convert("RGB"))
    logo[: int(0.8 * logo.shape[0])] = False  # the bottom-right mark only
    ys, xs = np.nonzero(logo)
    ids = np.zeros(logo.shape, np.uint8)
    boxes = []
    if not logo_only:
        cv2.ellipse(ids, (278, 225), (205, 165), 0, 0, 360, 1, -1)
        boxes.append(("cup", [73, 60, 483, 390]))
    logo_box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    ids[logo_box[1] : logo_box[3], logo_box[0] : logo_box[2]] = len(boxes) + 1
    boxes.append(("logo", logo_box))
    s = sample_of(drawn, tmp_path, name)
    rgb = np.asarray(drawn)
    s.ann["products"] = [
        {
            "label": label,
            "box": box,
            "mask_index": i + 1,
            "area_fraction": round(float((ids == i + 1).mean()), 5),
            "close_view": square_box(box, 0.25),
        }
        for i, (label, box) in enumerate(boxes)
    ]
    s.members["mask.png"] = encode_png(ids)
    s.members["views.jpg"] = encode_strip([crop_square(rgb, q["close_view"], 64) for q in s.ann["products"]])
    s.ann["views"] = {"size": 64, "count": len(boxes)}
    return s


class SameImageReader:
    """The real RapidOCR, read once per distinct image (the product tests run one photo four ways)."""

    name = "rapidocr"

    def __init__(self, reader):
        self.reader, self.seen = reader, {}

    def read(self, images):
        keys = [np.asarray(img).tobytes() for img in images]
        missing = [img for img, k in zip(images, keys, strict=True) if k not in self.seen]
        for img, found in zip(missing, self.reader.read(missing) if missing else [], strict=True):
            self.seen[np.asarray(img).tobytes()] = found
        return [self.seen[k] for k in keys]


def cleanup_with(ocr: SameImageReader, **params) -> Cleanup:
    stage = Cleanup(Cleanup.Params(stage="cleanup", inpaint="telea", **params))
    stage.setup()
    stage.backends["ocr"], stage.ready = ocr, True
    return stage


def test_a_product_mask_over_an_inpainted_logo_is_flagged(tmp_path, reader):
    from hoiforge.datasets.masks import decode_mask
    from hoiforge.datasets.views import decode_strip

    ocr = SameImageReader(reader)
    flag = cleanup_with(ocr, products={"on_inpainted": "flag"})
    before = with_products(tmp_path, "flag.png")
    (out,) = run_stage(flag, [before])
    cup, logo = out.ann["products"]
    assert out.live and logo["inpainted"] and logo["inpainted_fraction"] >= 0.5
    assert not cup["inpainted"] and cup["inpainted_fraction"] < 0.5  # the banner crosses the cup, but only a strip of it
    assert out.ann["cleanup"]["products_inpainted"] == [2] and out.metrics["products_inpainted"] == 1
    assert out.members["mask.png"] == before.members["mask.png"]  # flagged, not removed
    assert len(decode_strip(out.members["views.jpg"])) == 2 and out.members["views.jpg"] != before.members["views.jpg"]  # re-cut

    drop = cleanup_with(ocr)  # default: drop the product
    kept, gone = run_stage(drop, [with_products(tmp_path, "drop.png"), with_products(tmp_path, "logo.png", logo_only=True)])
    (cup,) = kept.ann["products"]
    assert kept.live and cup["label"] == "cup" and cup["mask_index"] == 1 and kept.ann["cleanup"]["products_dropped"] == ["logo"]
    ids = decode_mask(kept.members["mask.png"])
    assert set(np.unique(ids)) == {0, 1} and kept.ann["views"]["count"] == 1 and len(decode_strip(kept.members["views.jpg"])) == 1
    assert kept.metrics["products"] == 1 and kept.metrics["product_label"] == "cup"
    assert gone.status == "dropped" and gone.reason_code == "cleanup.no_products_left"

    whole = cleanup_with(ocr, products={"on_inpainted": "drop_image"})
    (out,) = run_stage(whole, [with_products(tmp_path, "image.png")])
    assert out.status == "dropped" and out.reason_code == "cleanup.product_inpainted" and out.reason_params["products"] == 1
    assert len(ocr.seen) == 1  # one photo, read once
