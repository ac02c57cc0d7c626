"""products: product boxes, labels and instance masks (VirtualModel's o, m; OER's SAM masks).

The HoIHuman recipe runs GroundingDINO with the paper's prompt and feeds its boxes to SAM
(``detector: grounding-dino``, ``segmenter: sam``); the default embedded backend ``worn-held``
finds what each person wears (``clothes-upper``, ``clothes-lower``, ``shoes``, ``headwear``) and
holds (``held-object``), never the background (models/worn_held.py); ``embedded`` is the older
class-agnostic salient-foreground detector (models/embedded_segment.py). Writes:

- ``ann["products"]``: per product label, phrase, box, score, mask_score, area (pixels),
  area_fraction, ``rle`` (the product's whole mask, COCO RLE: overlaps survive), close_view
  (the square crop box around the product, VirtualModel's close view v; may run past the image);
- ``<id>.mask.png``: instance map, 0 = background, i = ``ann["products"][i-1]`` (an overlapping
  pixel belongs to the better product);
- ``<id>.views.jpg``: the first ``views_tiles`` products' close views as one strip of that many
  ``views_size`` squares, black after the last product, for every sample (one size per build;
  datasets/views.py), so trainers and DINOv2 never decode the full image for it;
  ``ann["views"]``: ``{size, tiles, count}`` (count: the tiles that are products);
- metrics ``products`` (count), ``product_area`` (largest area fraction), ``product_label``.

Images with fewer than ``min_products`` products are dropped unless ``drop_if_none`` is off.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from hoiforge.datasets.masks import encode_mask
from hoiforge.datasets.views import crop_square, encode_strip, mask_to_rle, square_box
from hoiforge.models.tasks import Product
from hoiforge.stages.base import MetricSpec, Sample, Slot, SlotConfig, Stage, StageParams, slot

# HoIHuman's GroundingDINO prompt (VirtualModel paper), verbatim.
HOIHUMAN_PROMPT = (
    "cosmetics, clothes, shoes, accessories, electronic products, bottle, cup, furniture, jacket, "
    "pants, dress, hat, glasses, coat, sneaker, phone, book"
)


class ProductsParams(StageParams):
    detector: Annotated[SlotConfig, Slot("product-detector")] = slot("worn-held")
    segmenter: Annotated[SlotConfig, Slot("box-segmenter")] = slot("embedded")
    prompt: str = HOIHUMAN_PROMPT
    min_area: float = Field(0.005, ge=0, le=1, description="min mask area as a fraction of the image")
    max_products: int = Field(20, ge=1)
    min_products: int = Field(1, ge=0)
    drop_if_none: bool = Field(True, description="drop images with fewer than min_products products")
    nms_iou: float = Field(0.7, gt=0, le=1, description="a mask overlapping a better one above this IoU is a duplicate")
    close_view_margin: float = Field(0.25, ge=0, description="close-view crop: the box's longer side grown by this fraction per side")
    views_size: int = Field(256, ge=32, le=1024, description="side of each close-view tile in <id>.views.jpg")
    # (ours) One strip size per build, so loaders stack it: 4 tiles hold every product of most
    # e-commerce photos; a product past them is cut from the image at load (its close_view box).
    views_tiles: int = Field(4, ge=1, le=64, description="tiles in <id>.views.jpg (black after the last product)")

    # Before backend slots, the GroundingDINO thresholds were stage keys.
    _legacy_options: ClassVar[dict[str, str]] = {"box_threshold": "detector", "text_threshold": "detector"}

    @model_validator(mode="after")
    def _check(self) -> ProductsParams:
        if self.min_products > self.max_products:
            raise ValueError(f"min_products {self.min_products} > max_products {self.max_products}")
        return self


def instance_map(
    products: list[Product],
    shape: tuple[int, int],
    min_pixels: int,
    nms_iou: float,
    limit: int,
) -> tuple[np.ndarray, list[Product]]:
    """Paint masks best-first; duplicates (mask IoU > nms_iou) and products left too small are skipped."""
    ids = np.zeros(shape, np.uint16 if limit > 255 else np.uint8)
    kept: list[Product] = []
    for p in products:
        if len(kept) == limit:
            break
        mask = p.mask
        if mask is None or mask.sum() < min_pixels:
            continue
        if any(np.logical_and(mask, k.mask).sum() / np.logical_or(mask, k.mask).sum() > nms_iou for k in kept):
            continue
        own = mask & (ids == 0)  # an overlapping pixel belongs to the better product
        if own.sum() < min_pixels:
            continue
        kept.append(p)
        ids[own] = len(kept)
    return ids, kept


class Products(Stage):
    name = "products"
    Params = ProductsParams
    writes = ("products", "mask.png", "views.jpg")
    metrics = (
        MetricSpec("products", "count", "products", "products per image"),
        MetricSpec("product_area", "fraction", "of the image", "largest product mask"),
        MetricSpec("product_label", "category", title="first product's label"),
    )
    annotations = {
        "products": [
            {
                "label": "",
                "phrase": "",
                "box": [0.0],
                "score": 0.0,
                "mask_score": 0.0,
                "mask_index": 0,
                "mask_box": [0],
                "area": 0,
                "area_fraction": 0.0,
                "close_view": [0.0],
                "rle": {"size": [0], "counts": ""},
                "source": "",
            }
        ],
        "views": {"size": 0, "tiles": 0, "count": 0},
    }
    default_batch_size = 8

    def setup(self) -> None:
        from hoiforge.models.segment_service import ProductSegmenter

        p = self.params
        # One service for the build and for eval's OER; it skips the segmenter when the embedded
        # detector's own masks are final.
        self.service = ProductSegmenter(p.detector.backend, p.segmenter.backend, p.detector.options, p.segmenter.options)

    def teardown(self) -> None:
        self.service.close()
        self.ready = False

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        images = [s.rgb() for s in samples]
        # The person stage's boxes, where it ran: the worn-held detector looks only at persons.
        persons = [[tuple(q["box"]) for q in s.ann["persons"]] if "persons" in s.ann else None for s in samples]
        found = self.service.detect(images, p.prompt, persons=None if any(b is None for b in persons) else persons)
        for s, rgb, products in zip(samples, images, found, strict=True):
            h, w = rgb.shape[:2]
            # Best first: the detector's score; the class-agnostic detector's scores are contrast, so area decides there.
            ranked = sorted(
                products,
                key=lambda q: -(float(q.mask.sum()) if p.detector.backend == "embedded" else q.score),
            )
            ids, kept = instance_map(
                ranked,
                (h, w),
                max(1, int(p.min_area * h * w)),
                p.nms_iou,
                p.max_products,
            )
            s.ann["products"] = [self._to_json(q, i + 1, ids, p.close_view_margin) for i, q in enumerate(kept)]
            tiles = [crop_square(rgb, q["close_view"], p.views_size) for q in s.ann["products"][: p.views_tiles]]
            s.members["views.jpg"] = encode_strip(tiles, p.views_tiles, p.views_size)
            s.ann["views"] = {"size": p.views_size, "tiles": p.views_tiles, "count": len(tiles)}
            s.metrics["products"] = len(kept)
            s.metrics["product_area"] = max((q["area_fraction"] for q in s.ann["products"]), default=0.0)
            s.metrics["product_label"] = kept[0].label if kept else ""
            if kept:
                s.members["mask.png"] = encode_mask(ids)
            if p.drop_if_none and len(kept) < p.min_products:
                self.drop(
                    s,
                    "too_few",
                    f"{len(kept)} products found by {self.backend_name} (need >= {p.min_products}, min area {p.min_area})",
                    products=len(kept),
                    min=p.min_products,
                )

    @staticmethod
    def _to_json(q: Product, index: int, ids: np.ndarray, margin: float) -> dict[str, Any]:
        own = ids == index
        ys, xs = np.nonzero(own)
        area = int(own.sum())
        return {
            "label": q.label,
            "phrase": q.phrase,
            "box": [round(float(v), 2) for v in q.box],
            "score": round(float(q.score), 4),
            "mask_score": None if q.mask_score is None else round(float(q.mask_score), 4),
            "mask_index": index,
            "mask_box": [
                int(xs.min()),
                int(ys.min()),
                int(xs.max()) + 1,
                int(ys.max()) + 1,
            ],
            "area": area,
            "area_fraction": round(area / own.size, 5),
            "close_view": square_box(q.box, margin),
            "rle": mask_to_rle(q.mask),
            "source": q.source,
        }
