"""cleanup: find overlaid text, watermarks and logos with OCR and inpaint them away (HoIHuman).

Runs before captioning, pose and edges so that every later annotation describes the cleaned
image; run it after ``person`` (and ``products`` when present) so that their boxes and masks
tell text printed on clothing or on a product from text laid over the photo.

Which regions count as text. The OCR backends return every detected box with its detection
score (``det_score``) and its recognition score (``score``). A region is decided on when its
detection is confident (``det_score >= policy.min_det_score``) or its text was read
(``score >= policy.min_rec_score``); anything else is ``ignored`` (rule ``low score``). Deciding on
detection boxes matters because a watermark the recogniser cannot read (mirrored, stylised, in a
script it does not know) would otherwise be discarded before the rules and stay in the photo. An
unreadable box is removed only by the overlay rules (1, 2, 5 below); one that would fall to
``scene text`` is ``ignored`` (rule ``unreadable scene text``): inside the photo, a confident but
unreadable box is as often a pattern (PP-OCR finds one on the fixture's coffee cup, det 0.68).

Removal policy. Every OCR region gets one action by the first rule that matches, in this order
(each threshold is a recipe key under ``policy:``). Overlay shapes come first because a shop's
banner or mark laid over a product would otherwise count as printed on it; the price is that a
brand printed wider than ``banner_min_width`` of the image (a frame-filling close-up) is removed.

1. ``overlay banner``: the text box is at least ``banner_min_width`` of the image width
   (sale banners, captions laid across the photo) -> removed, even over a person or product.
2. ``corner watermark``: the centre of the text box lies in a corner zone (within
   ``corner_margin`` of the image width of a side edge and of the height of a top/bottom edge)
   -> removed, even over a person or product (shops stamp their mark in a corner).
3. ``on product``: at least ``inside_fraction`` of the text polygon lies on the product
   instance mask (``mask.png``, non-zero = product) -> kept (a brand printed on a shoe is part
   of the product). Switch off with ``keep_on_products: false``.
4. ``on clothing``: at least ``inside_fraction`` of the polygon lies inside a person box
   (``persons[i].box`` from the person stage) -> kept. Switch off with ``keep_on_persons: false``.
5. ``border watermark``: the box comes within ``edge_margin`` of an image edge -> removed.
6. ``scene text``: anything else (signs, posters in the background) -> ``scene_text``
   (``remove`` by default: the generators should not learn to draw garbled text).

Removed polygons are rasterised, each dilated by max(``margin_px``, ``margin_rel`` x its text
height) to cover anti-aliasing and shadows, and inpainted. If the dilated mask covers more than
``max_fraction`` of the image, the image is dropped instead (inpainting that much invents the
photo). The image is re-encoded (same format; ``quality`` for JPEG/WebP, PNG lossless) only when
something was removed; otherwise its bytes stay the source bytes.

Products re-checked. The products stage runs before cleanup (its masks tell printed text from
overlays), so a product can be a logo or a banner that cleanup then paints out. After inpainting,
each product's pixels in ``mask.png`` are compared with the inpainted mask: a product with at least
``products.max_inpainted`` of its pixels inpainted gets ``inpainted: true`` and, by
``products.on_inpainted``: ``flag`` (kept, flagged), ``drop_product`` (default: removed from
``ann["products"]``, ``mask.png`` renumbered, the ``views.jpg`` strip re-cut; the image is dropped
with ``cleanup.no_products_left`` when none remain) or ``drop_image`` (``cleanup.product_inpainted``).
When cleanup inpainted anything, every product gets ``inpainted_fraction`` and ``inpainted``, and
the views strip is re-cut from the cleaned image (it was cut from the photo with the text on it).

Writes ``text_regions`` (every region: polygon, box, text, score, det_score, action, rule) and
``cleanup`` (backends, removed count, covered fraction, margins, products flagged/dropped) to the
annotation document; metrics ``text_regions``, ``text_removed``, ``text_ignored``,
``cleanup_fraction``, ``products_inpainted``.
"""

from __future__ import annotations

import io
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hoiforge.datasets.masks import decode_mask, encode_mask
from hoiforge.datasets.views import crop_square, encode_strip
from hoiforge.models.inpaint import dilate
from hoiforge.models.tasks import TextRegion
from hoiforge.stages.base import MetricSpec, Sample, Slot, SlotConfig, Stage, StageParams, slot

REMOVED, KEPT, IGNORED = "removed", "kept", "ignored"


class TextPolicy(BaseModel):
    """Which OCR regions are removed; see the module docstring for the order of the rules."""

    model_config = ConfigDict(extra="forbid")

    keep_on_products: bool = True
    keep_on_persons: bool = True
    inside_fraction: float = Field(
        0.6, gt=0, le=1, description="share of a text polygon on a product mask / person box to count as printed on it"
    )
    banner_min_width: float = Field(0.4, gt=0, le=1, description="text box width / image width from which text is an overlay banner")
    corner_margin: float = Field(0.2, ge=0, le=0.5, description="corner zone size as a fraction of image width and height")
    edge_margin: float = Field(0.04, ge=0, le=0.5, description="text this close to an edge (fraction of the side) is a border watermark")
    scene_text: Literal["remove", "keep"] = "remove"
    min_det_score: float = Field(0.7, ge=0, le=1, description="a detected box this confident is decided on even when unreadable")
    min_rec_score: float = Field(0.5, ge=0, le=1, description="a region read this confidently is decided on whatever its det score")


class ProductRecheck(BaseModel):
    """What happens to a product whose mask was mostly inpainted (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    max_inpainted: float = Field(0.5, gt=0, le=1, description="share of a product's mask pixels inpainted from which it is flagged")
    on_inpainted: Literal["flag", "drop_product", "drop_image"] = "drop_product"


class CleanupParams(StageParams):
    ocr: Annotated[SlotConfig, Slot("text-reader")] = slot("rapidocr")
    inpaint: Annotated[SlotConfig, Slot("inpainter")] = slot("patchmatch")
    policy: TextPolicy = Field(default_factory=TextPolicy)
    products: ProductRecheck = Field(default_factory=ProductRecheck)
    margin_px: int = Field(4, ge=0, description="mask dilation, pixels (at least)")
    margin_rel: float = Field(0.2, ge=0, le=2, description="mask dilation as a fraction of the text height")
    max_fraction: float = Field(0.2, gt=0, le=1, description="drop the image when the mask would cover more than this")
    quality: int = Field(95, ge=50, le=100, description="JPEG/WebP quality when a cleaned image is re-encoded")

    # Before backend slots, the OCR score threshold was a stage key.
    _legacy_options: ClassVar[dict[str, str]] = {"min_score": "ocr"}


# -- policy ------------------------------------------------------------------------------------
def polygon_mask(polygon: list[tuple[float, float]] | list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(polygon, np.float32)).astype(np.int32)], 1)
    return mask


def text_height(polygon) -> float:
    """Height of a text line: the shorter side of its (possibly rotated) quadrilateral."""
    pts = np.asarray(polygon, np.float64)
    sides = np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1)
    return float(min(sides)) if len(sides) else 0.0


def decide(
    region: TextRegion,
    shape: tuple[int, int],
    policy: TextPolicy,
    person_boxes: list[list[float]],
    product_mask: np.ndarray | None,
) -> tuple[str, str]:
    """(action, rule) for one region: the first matching rule of the module docstring."""
    readable = region.score >= policy.min_rec_score
    if not readable and (region.det_score is None or region.det_score < policy.min_det_score):
        return IGNORED, "low score"
    action, rule = _first_rule(region, shape, policy, person_boxes, product_mask)
    if not readable and rule == "scene text":
        # An unreadable box inside the photo is as likely texture (a pattern on a cup) as text:
        # detection alone removes only overlay shapes (banners, corner and border marks).
        return IGNORED, "unreadable scene text"
    return action, rule


def _first_rule(
    region: TextRegion,
    shape: tuple[int, int],
    policy: TextPolicy,
    person_boxes: list[list[float]],
    product_mask: np.ndarray | None,
) -> tuple[str, str]:
    h, w = shape
    x0, y0, x1, y1 = region.box
    poly = polygon_mask(region.polygon, shape)
    area = max(int(poly.sum()), 1)
    if (x1 - x0) >= policy.banner_min_width * w:
        return REMOVED, "overlay banner"
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cw, ch = policy.corner_margin * w, policy.corner_margin * h
    if (cx <= cw or cx >= w - cw) and (cy <= ch or cy >= h - ch):
        return REMOVED, "corner watermark"
    if policy.keep_on_products and product_mask is not None and (poly & (product_mask > 0)).sum() / area >= policy.inside_fraction:
        return KEPT, "on product"
    if policy.keep_on_persons:
        for bx0, by0, bx1, by1 in person_boxes:
            inside = np.zeros(shape, np.uint8)
            inside[max(0, int(by0)) : int(np.ceil(by1)), max(0, int(bx0)) : int(np.ceil(bx1))] = 1
            if (poly & inside).sum() / area >= policy.inside_fraction:
                return KEPT, "on clothing"
    ew, eh = policy.edge_margin * w, policy.edge_margin * h
    if x0 <= ew or y0 <= eh or x1 >= w - ew or y1 >= h - eh:
        return REMOVED, "border watermark"
    return (REMOVED if policy.scene_text == "remove" else KEPT), "scene text"


def removal_mask(polygons: list, shape: tuple[int, int], margin_px: int, margin_rel: float) -> np.ndarray:
    """0/255 mask of the removed polygons, each dilated by max(margin_px, margin_rel x text height)."""
    mask = np.zeros(shape, np.uint8)
    for polygon in polygons:
        margin = max(margin_px, int(np.ceil(margin_rel * text_height(polygon))))
        mask |= dilate(polygon_mask(polygon, shape), margin)
    return mask


def encode_like(rgb: np.ndarray, ext: str, mode: str, quality: int) -> bytes:
    """Bytes of ``rgb`` in the stored image's format and mode (greyscale stays greyscale)."""
    from PIL import Image

    img = Image.fromarray(rgb, "RGB")
    if mode == "L":
        img = img.convert("L")
    buf = io.BytesIO()
    if ext == "jpg":
        img.save(buf, "JPEG", quality=quality, subsampling=0)
    elif ext == "webp":
        img.save(buf, "WEBP", quality=quality)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


def _stored_mode(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.mode


# -- the stage ---------------------------------------------------------------------------------
class Cleanup(Stage):
    name = "cleanup"
    Params = CleanupParams
    writes = ("text_regions", "cleanup")
    metrics = (
        MetricSpec("text_regions", "count", "regions", "text regions found per image"),
        MetricSpec("text_removed", "count", "regions", "text regions removed per image"),
        MetricSpec("text_ignored", "count", "regions", "text regions left (policy) per image"),
        MetricSpec("cleanup_fraction", "fraction", "of the image", "inpainted fraction of the image"),
        MetricSpec("products_inpainted", "count", "products", "products touched by inpainting"),
    )
    annotations = {
        "text_regions": [{"polygon": [[0.0]], "box": [0.0], "text": "", "score": 0.0, "det_score": 0.0, "action": "", "rule": ""}],
        "cleanup": {
            "ocr": "",
            "inpaint": "",
            "removed": 0,
            "fraction": 0.0,
            "margin_px": 0,
            "margin_rel": 0.0,
            "products_inpainted": [0],  # mask indices of the products the inpainting covered
            "products_dropped": [""],  # labels of those dropped (products.on_inpainted: drop_product)
        },
        "products": [{"inpainted": False, "inpainted_fraction": 0.0}],
    }
    default_batch_size = 4

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        found = self.backends["ocr"].read([s.rgb() for s in samples])
        to_fill: list[tuple[Sample, np.ndarray]] = []
        for s, regions in zip(samples, found, strict=True):
            mask = self._decide(s, regions)
            if mask is not None:
                to_fill.append((s, mask))
        if not to_fill:
            return
        filled = self.backends["inpaint"].inpaint([s.rgb() for s, _ in to_fill], [m for _, m in to_fill])
        for (s, mask), rgb in zip(to_fill, filled, strict=True):
            image = s.ann.setdefault("image", {})
            ext = image.get("ext", "png")
            mode = _stored_mode(s.image)
            data = encode_like(rgb, ext, mode, p.quality)
            # Lossless RGB: the pixels are exactly the new bytes; otherwise decode them again.
            s.set_image(data, rgb if ext == "png" and mode == "RGB" else None)
            image["reencoded"] = f"{image['reencoded']}; cleanup" if image.get("reencoded") else "cleanup"
            s.metrics["reencoded"] = True
            self._recheck_products(s, mask)

    def _recheck_products(self, s: Sample, inpainted: np.ndarray) -> None:
        """Flag or drop products whose mask the inpainting covered; re-cut the views from the cleaned image."""
        products, png = s.ann.get("products"), s.members.get("mask.png")
        if not products or not png:
            return
        rp = self.params.products
        ids = decode_mask(png)
        filled = inpainted > 0
        flagged = []
        for q in products:
            own = ids == q["mask_index"]
            fraction = float((own & filled).sum() / max(int(own.sum()), 1))
            q["inpainted_fraction"] = round(fraction, 4)
            q["inpainted"] = fraction >= rp.max_inpainted
            if q["inpainted"]:
                flagged.append(q)
        s.metrics["products_inpainted"] = len(flagged)
        s.ann["cleanup"]["products_inpainted"] = [q["mask_index"] for q in flagged]
        if flagged and rp.on_inpainted == "drop_image":
            worst = max(q["inpainted_fraction"] for q in flagged)
            self.drop(
                s,
                "product_inpainted",
                f"{len(flagged)} of {len(products)} products are mostly inpainted (up to {worst:.0%}, max {rp.max_inpainted:.0%})",
                products=len(flagged),
                fraction=worst,
                max=rp.max_inpainted,
            )
            return
        if flagged and rp.on_inpainted == "drop_product":
            kept = [q for q in products if not q["inpainted"]]
            s.ann["cleanup"]["products_dropped"] = [q["label"] for q in flagged]
            if not kept:
                self.drop(
                    s,
                    "no_products_left",
                    f"all {len(products)} products were mostly inpainted (max {rp.max_inpainted:.0%})",
                    products=len(products),
                    max=rp.max_inpainted,
                )
                return
            renumbered = np.zeros_like(ids)
            for new, q in enumerate(kept, start=1):
                renumbered[ids == q["mask_index"]] = new
                q["mask_index"] = new
            s.ann["products"] = products = kept
            s.members["mask.png"] = encode_mask(renumbered)
            s.metrics["products"] = len(kept)
            s.metrics["product_area"] = max(q["area_fraction"] for q in kept)
            s.metrics["product_label"] = kept[0]["label"]
        views = s.ann.get("views")
        if views and "views.jpg" in s.members:  # cut before cleanup: the text is in it
            slots = views.get("tiles") or len(products)
            tiles = [crop_square(s.rgb(), q["close_view"], views["size"]) for q in products[:slots]]
            s.members["views.jpg"] = encode_strip(tiles, slots, views["size"])
            views["count"] = len(tiles)

    def _decide(self, s: Sample, regions: list[TextRegion]) -> np.ndarray | None:
        """Annotate the regions; return the removal mask, or None when nothing is to be filled."""
        p = self.params
        shape = s.rgb().shape[:2]
        persons = [person["box"] for person in s.ann.get("persons", []) if "box" in person]
        product_png = s.members.get("mask.png")
        products = decode_mask(product_png) if product_png else None
        records, removed, ignored = [], [], 0
        for region in regions:
            action, rule = decide(region, shape, p.policy, persons, products)
            records.append({**region.to_json(), "action": action, "rule": rule})
            if action == REMOVED:
                removed.append(region.polygon)
            ignored += action == IGNORED
        mask = removal_mask(removed, shape, p.margin_px, p.margin_rel)
        fraction = float((mask > 0).mean())
        s.ann["text_regions"] = records
        s.ann["cleanup"] = {
            "ocr": p.ocr.backend,
            "inpaint": p.inpaint.backend,
            "removed": len(removed),
            "fraction": round(fraction, 5),
            "margin_px": p.margin_px,
            "margin_rel": p.margin_rel,
        }
        s.metrics.update(text_regions=len(records), text_removed=len(removed), text_ignored=ignored, cleanup_fraction=round(fraction, 5))
        if fraction > p.max_fraction:
            self.drop(
                s,
                "coverage",
                f"text cleanup would cover {fraction:.1%} of the image (max {p.max_fraction:.0%})",
                fraction=round(fraction, 4),
                max=p.max_fraction,
            )
            return None
        return mask if removed else None
