"""shoes: shoe masks, the shoe-only image and bootstrap wearable-area labels (ShoeModel's shoe-leg set).

Needs the pose stage before it (the feet decide which masks are shoes and which side they are).
Mask source (``source``):

- ``products``: the products stage's instance masks whose label is a shoe word (grounding-dino
  with the prompt "shoe, sneaker, boot, sandal, high heels", SAM masks): the paper's way;
- ``keypoints``: the embedded segmenter, GrabCut seeded by each seen foot's keypoints
  (models/foot_segment.py), for machines without detector/SAM weights;
- ``auto`` (default): ``products`` when the products stage found shoe-labelled masks, else
  ``keypoints`` (the embedded products detector labels everything "product" and leaves worn
  shoes out with the person, so it never feeds this stage).

Writes ``ann["shoes"]`` (per shoe: person, side, box, area, source, touches_border),
``<id>.shoe.png`` (RGBA: the shoe pixels, alpha 0 and black elsewhere), ``<id>.shoemask.png``
(instance map, i = shoes[i-1]) and, with ``bootstrap_wear``, ``<id>.wear.png``: the bootstrap
wearable-area labels of a worn photo, 0 background, 1 visible = the shoe masks, and no 2 —
a worn shoe hides its opening, insole and inner collar, so the wearable area is left empty and
a worn photo never contradicts the labels of the same shoe unworn.

Drops (reasons as below): no feet visible (no toe or heel keypoint); more than ``max_shoes``
shoes; a shoe cut off by the frame (its mask touches the image border, or its foot's points
run out of the frame; ``cut_off: keep`` keeps such images and flags the shoe instead); a seen
foot without a shoe mask (``require_every_foot``: the worn photo would show a shoe that the
shoe-only image lacks); no shoe mask at all.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from hoiforge.datasets import keypoints as K
from hoiforge.datasets import leg as L
from hoiforge.datasets import wearable as W
from hoiforge.datasets.images import encode_png
from hoiforge.datasets.masks import decode_mask, encode_mask
from hoiforge.datasets.views import box_of, crop_square, square_box, to_crop
from hoiforge.models.foot_segment import FootSeeds, feet_of
from hoiforge.stages.base import MetricSpec, Sample, Slot, SlotConfig, Stage, StageParams, slot

SHOE_LABELS = ("shoe", "shoes", "sneaker", "sneakers", "boot", "boots", "sandal", "sandals", "high heels", "heels", "high heel")


class ShoesParams(StageParams):
    segmenter: Annotated[SlotConfig, Slot("shoe-segmenter")] = slot("foot-grabcut")
    source: Literal["auto", "products", "keypoints"] = "auto"
    shoe_labels: list[str] = Field(default_factory=lambda: list(SHOE_LABELS), description="products labels that are shoes")
    min_score: float = Field(0.3, ge=0, le=1, description="a foot keypoint counts as seen above this score")
    min_pixels: int = Field(64, ge=1, description="a shoe mask smaller than this is no shoe")
    max_shoes: int = Field(2, ge=1)
    cut_off: Literal["drop", "keep"] = Field("drop", description="a shoe touching the image border: drop the image, or keep it flagged")
    border: int = Field(1, ge=1, description="a mask within this many pixels of the border touches it (also: within 0.2 foot lengths)")
    require_every_foot: bool = Field(True, description="drop when a seen foot gets no shoe mask (the pair would miss a shoe)")
    bootstrap_wear: bool = Field(True, description="write <id>.wear.png: 1 = shoe masks, wearable area empty (worn photo)")
    crop_size: int = Field(256, ge=32, le=1024, description="side of <id>.shoecrop.png, LpS phase 1's input (paper: 256)")
    crop_margin: float = Field(0.15, ge=0, le=1, description="shoe-pair crop: the shoes' box's longer side grown by this per side")


class Shoes(Stage):
    name = "shoes"
    Params = ShoesParams
    reads = ("keypoints",)
    writes = ("shoes", "shoe.png", "shoemask.png", "shoecrop.png", "wear.png", "wear")
    metrics = (
        MetricSpec("shoes", "count", "shoes", "shoes per image", over="all"),
        MetricSpec("shoe_area", "fraction", "of the image", "shoe mask area"),
    )
    writes = ("shoes", "shoe_crop", "shoe.png", "shoemask.png", "shoecrop.png", "wear.png", "wear")
    annotations = {
        "shoes": [
            {
                "person": 0,
                "side": "",
                "box": [0],
                "area": 0,
                "area_fraction": 0.0,
                "source": "",
                "product_index": 0,
                "touches_border": False,
            }
        ],
        "shoe_crop": {"box": [0.0], "size": 0, "person": 0, "foot": [[0.0]]},
        "wear": W.WEAR_ANNOTATION,
    }
    default_batch_size = 8

    def requires(self) -> tuple[str, ...]:
        return ("keypoints",) + (("products", "mask.png") if self.params.source == "products" else ())

    def provides(self) -> tuple[str, ...]:
        return ("shoes", "shoe_crop", "shoe.png", "shoemask.png", "shoecrop.png") + (
            ("wear.png", "wear") if self.params.bootstrap_wear else ()
        )

    @property
    def backend_name(self) -> str:
        return f"{self.params.source}+{self.params.segmenter.backend}"

    def setup(self) -> None:
        super().setup()
        self.segmenter = self.backends["segmenter"]

    def process(self, samples: list[Sample]) -> None:
        for s in samples:
            self._one(s)

    def _one(self, s: Sample) -> None:
        p = self.params
        rgb = s.rgb()
        h, w = rgb.shape[:2]
        feet = feet_of(s.ann["persons"], p.min_score)
        if not feet:
            s.metrics.update(shoes=0, shoe_area=0.0)
            self.drop(s, "no_feet", f"no feet visible (no toe or heel keypoint above {p.min_score})", min_score=p.min_score)
            return
        from_products = self._product_shoes(s, feet) if p.source in ("auto", "products") else None
        if from_products is None and p.source == "products":
            raise ValueError("shoes source 'products' but the products stage found no shoe-labelled masks (run it with a shoe prompt)")
        if from_products is not None:
            shoes = from_products
        else:
            masks = self.segmenter.segment(rgb, feet)
            shoes = [(m, f, self.segmenter.name, None) for m, f in zip(masks, feet, strict=True)]
        shoes = [x for x in shoes if x[0].sum() >= p.min_pixels]
        runs_out = {(f.person, f.side) for f in feet if self.segmenter.runs_out_of_frame(f, (h, w))}
        ids = np.zeros((h, w), np.uint8)
        records = []
        for mask, foot, source, product in shoes:
            ids[mask & (ids == 0)] = len(records) + 1
            out_of_frame = (foot.person, foot.side) in runs_out or self.segmenter.mask_near_border(mask, foot)
            records.append(_record(mask, foot, source, product, p.border, out_of_frame))
        s.ann["shoes"] = records
        s.metrics["shoes"] = len(records)
        s.metrics["shoe_area"] = round(float((ids > 0).mean()), 5)
        masked = {(r["person"], r["side"]) for r in records}
        unmasked = [f for f in feet if (f.person, f.side) not in masked]
        if len(records) > p.max_shoes:
            self.drop(s, "too_many", f"more than {p.max_shoes} shoes ({len(records)})", shoes=len(records), max=p.max_shoes)
            return
        cut = sorted(
            {(r["person"], r["side"]) for r in records if r["touches_border"]}
            | {(f.person, f.side) for f in unmasked if (f.person, f.side) in runs_out}
        )
        if cut and p.cut_off == "drop":
            self.drop(s, "cut_off", f"shoe cut off by the frame ({_feet(cut)})", feet=len(cut))
            return
        lost = [(f.person, f.side) for f in unmasked if (f.person, f.side) not in runs_out]
        if lost and p.require_every_foot:
            self.drop(s, "foot_without_shoe", f"no shoe mask for a visible foot ({_feet(lost)})", feet=len(lost))
            return
        if not records:
            self.drop(
                s, "none", f"no shoe found at the feet ({len(feet)} feet seen, every mask under {p.min_pixels} pixels)", feet=len(feet)
            )
            return
        shoe = ids > 0
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[shoe, :3] = rgb[shoe]
        rgba[shoe, 3] = 255
        s.members["shoe.png"] = encode_png(rgba)
        s.members["shoemask.png"] = encode_mask(ids)
        self._crop(s, rgba, shoe, records)
        if p.bootstrap_wear:
            labels = np.where(shoe, W.VISIBLE, W.BACKGROUND).astype(np.uint8)
            s.members["wear.png"] = W.encode_labels(labels)
            s.ann["wear"] = {
                "source": "bootstrap",
                **W.label_counts(labels),
                "note": "worn photo: shoe masks are visible, wearable area unseen",
            }

    def _crop(self, s: Sample, rgba: np.ndarray, shoe: np.ndarray, records: list[dict[str, Any]]) -> None:
        """LpS phase 1's input: the square around both shoes (no person box), ``crop_size`` px, and the
        wearer's 8 foot keypoints in crop pixels (added to leg.json as ``crop``)."""
        p = self.params
        box = square_box(box_of(shoe), p.crop_margin)
        s.members["shoecrop.png"] = encode_png(crop_square(rgba, box, p.crop_size, fill=0))
        area: dict[int, int] = {}
        for r in records:
            area[r["person"]] = area.get(r["person"], 0) + r["area"]
        wearer = max(area, key=area.get)
        kp = np.asarray(s.ann["persons"][wearer]["keypoints"], np.float64)[list(K.SHOE_FOOT)]
        crop = {"box": [round(v, 2) for v in box], "size": p.crop_size, "person": wearer,
                "foot": [[round(float(x), 2), round(float(y), 2), round(float(c), 4)] for x, y, c in to_crop(kp, box, p.crop_size)]}  # fmt: skip
        s.ann["shoe_crop"] = crop
        if s.members.get("leg.json"):
            doc = json.loads(s.members["leg.json"])
            doc["crop"] = crop
            s.members["leg.json"] = L.encode(doc)

    def _product_shoes(self, s: Sample, feet: list[FootSeeds]) -> list | None:
        """(mask, foot, source, product index) per shoe-labelled product, or None if there are none."""
        labels = {x.lower() for x in self.params.shoe_labels}
        products = [q for q in s.ann.get("products", []) if str(q.get("label", "")).lower() in labels]
        if not products or not s.members.get("mask.png"):
            return None
        ids = decode_mask(s.members["mask.png"])
        out = []
        for q in products:
            mask = ids == q["mask_index"]
            ys, xs = np.nonzero(mask)
            if not len(xs):
                continue
            source = f"products:{q.get('source') or q['label']}"
            on = [f for f in feet if _on_mask(mask, f.points)]
            if len(on) >= 2:
                # One mask over both feet (GroundingDINO + SAM often box "shoes" as a pair): split it.
                out += [(part, foot, f"{source}+split", q["mask_index"]) for part, foot in split_between_feet(mask, on)]
                continue
            centre = np.array([xs.mean(), ys.mean()])
            # The shoe belongs to the foot whose seen points lie nearest its centre.
            foot = min(feet, key=lambda f: float(np.min(np.linalg.norm(f.points - centre, axis=1))))
            out.append((mask, foot, source, q["mask_index"]))
        return out or None


def _on_mask(mask: np.ndarray, points: np.ndarray, tolerance: int = 3) -> bool:
    """A foot is on a mask when one of its seen points falls within ``tolerance`` px of it."""
    h, w = mask.shape
    for x, y in np.round(points).astype(int):
        y0, y1, x0, x1 = max(0, y - tolerance), min(h, y + tolerance + 1), max(0, x - tolerance), min(w, x + tolerance + 1)
        if y1 > y0 and x1 > x0 and mask[y0:y1, x0:x1].any():
            return True
    return False


def split_between_feet(mask: np.ndarray, feet: list[FootSeeds]) -> list[tuple[np.ndarray, FootSeeds]]:
    """One mask over several feet -> one part per foot.

    Separate blobs (the usual case: a gap between the shoes) are given whole to the foot whose
    points they hold; pixels of a blob that touches several feet (shoes touching, one SAM mask)
    go to the nearest foot's points, a cut halfway between the feet.
    """
    import cv2

    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    parts = {i: np.zeros_like(mask) for i in range(len(feet))}
    ys, xs = np.nonzero(mask)
    pixels = np.stack([xs, ys], axis=1).astype(np.float64)
    nearest = np.argmin(np.stack([np.min(np.linalg.norm(pixels[:, None] - f.points[None], axis=2), axis=1) for f in feet]), axis=0)
    blob_of = labels[ys, xs]
    for blob in range(1, n):
        here = blob_of == blob
        owners = set(nearest[here].tolist())
        holders = {i for i, f in enumerate(feet) if _on_mask(labels == blob, f.points)}
        if len(holders) == 1:
            owners = holders  # a blob holding one foot's points belongs to that foot entirely
        for i in owners:
            take = here & (nearest == i) if len(owners) > 1 else here
            parts[i][ys[take], xs[take]] = True
    return [(parts[i], f) for i, f in enumerate(feet) if parts[i].any()]


def _feet(feet: list[tuple[int, str]]) -> str:
    return ", ".join(f"person {person} {side}" for person, side in feet)


def _record(mask: np.ndarray, foot: FootSeeds, source: str, product: int | None, border: int, runs_out: bool) -> dict[str, Any]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    touches = bool(xs.min() < border or ys.min() < border or xs.max() >= w - border or ys.max() >= h - border)
    area = int(mask.sum())
    return {
        "person": foot.person,
        "side": foot.side,
        "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
        "area": area,
        "area_fraction": round(area / mask.size, 5),
        "source": source,
        "product_index": product,
        "touches_border": touches or runs_out,  # the mask reaches the border, or the foot's points run out of it
    }
