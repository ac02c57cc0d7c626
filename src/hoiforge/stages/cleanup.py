"""cleanup: find overlaid text, watermarks and logos with OCR and inpaint them away (HoIHuman).

Runs before captioning, pose and edges so that every later annotation describes the cleaned
image; run it after ``person`` (and ``products`` when present) so that their boxes and masks
tell text printed on clothing or on a product from text laid over the photo.

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

Writes ``text_regions`` (every region: polygon, box, text, score, action, rule) and ``cleanup``
(backends, removed count, covered fraction, margins) to the annotation document; metrics
``text_regions``, ``text_removed``, ``cleanup_fraction``.
"""

from __future__ import annotations

import io
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hoiforge.datasets.masks import decode_mask
from hoiforge.models.inpaint import dilate
from hoiforge.models.ocr import TextRegion
from hoiforge.stages.base import Sample, Slot, SlotConfig, Stage, StageParams, slot

REMOVED, KEPT = "removed", "kept"


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


class CleanupParams(StageParams):
    ocr: Annotated[SlotConfig, Slot("text-reader")] = slot("rapidocr")
    inpaint: Annotated[SlotConfig, Slot("inpainter")] = slot("patchmatch")
    policy: TextPolicy = Field(default_factory=TextPolicy)
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
        for (s, _), rgb in zip(to_fill, filled, strict=True):
            image = s.ann.setdefault("image", {})
            ext = image.get("ext", "png")
            mode = _stored_mode(s.image)
            data = encode_like(rgb, ext, mode, p.quality)
            # Lossless RGB: the pixels are exactly the new bytes; otherwise decode them again.
            s.set_image(data, rgb if ext == "png" and mode == "RGB" else None)
            image["reencoded"] = f"{image['reencoded']}; cleanup" if image.get("reencoded") else "cleanup"
            s.metrics["reencoded"] = True

    def _decide(self, s: Sample, regions: list[TextRegion]) -> np.ndarray | None:
        """Annotate the regions; return the removal mask, or None when nothing is to be filled."""
        p = self.params
        shape = s.rgb().shape[:2]
        persons = [person["box"] for person in s.ann.get("persons", []) if "box" in person]
        product_png = s.members.get("mask.png")
        products = decode_mask(product_png) if product_png else None
        records, removed = [], []
        for region in regions:
            action, rule = decide(region, shape, p.policy, persons, products)
            records.append({**region.to_json(), "action": action, "rule": rule})
            if action == REMOVED:
                removed.append(region.polygon)
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
        s.metrics.update(text_regions=len(records), text_removed=len(removed), cleanup_fraction=round(fraction, 5))
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
