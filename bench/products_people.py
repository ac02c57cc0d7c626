"""The embedded products backends on the bundled people photos: what they keep, where it lies, how long.

    python bench/products_people.py                 # table (stdout) + before/after figures in docs/img/
    python bench/products_people.py --no-figures
    python bench/products_people.py --extra DIR     # also: what worn-held keeps on your own people photos

Runs the person stage (mediapipe) and then the products stage twice per photo: ``embedded``
(salient non-person foreground, the old default) and ``worn-held`` (the new default), with the
hoihuman recipe's ``min_area`` (0.002). Per kept product it measures the share of its mask inside
a person's box grown by 10 % per side (the boxes of tests/test_products.py ``person_boxes``,
whichever holds more of it); on grace_hopper.jpg the upper garment's IoU with the hand-traced
jacket mask; on drinks.jpg the held object's share on the hand-traced glass and how much of the
glass it covers; the products stage's time per image (after one warm-up image).

``--extra DIR`` runs worn-held on every photo in DIR (no ground truth: it prints what is kept
and draws it into DIR/worn-held/) -- how the held-object checks were tried on photos that are
not bundled (docs/products.md names them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from hoiforge.datasets.images import decode_rgb
from hoiforge.datasets.masks import decode_mask
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.person import Person
from hoiforge.stages.products import Products
from hoiforge.stages.testing import decoded

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.test_products.person_boxes: the same person boxes as the test
DATA = ROOT / "tests" / "data"
PHOTOS = (
    "astronaut.png",
    "basketball1.png",
    "basketball2.png",
    "messi5.jpg",
    "grace_hopper.jpg",
    "camera.png",
    "drinks.jpg",
    "coffee.png",
    "scenetext01.jpg",
)
COLOURS = {  # RGB contour colour per label
    "clothes-upper": (230, 30, 30),
    "clothes-lower": (30, 120, 255),
    "shoes": (20, 200, 20),
    "headwear": (230, 0, 230),
    "held-object": (255, 200, 0),
    "product": (255, 200, 0),
}


def person_boxes(name: str, persons: list[dict]) -> list[list[float]]:
    from tests.test_products import person_boxes as boxes_of

    if not persons:  # the person stage found nobody (coffee, scenetext01): no product lies on a person
        return []
    return boxes_of(DATA / name, [q["box"] for q in persons])


def share_inside(mask: np.ndarray, boxes: list[list[float]]) -> float:
    h, w = mask.shape
    best = 0.0  # no person box at all: nothing of it lies on a person
    for x0, y0, x1, y1 in boxes:
        dx, dy = 0.05 * (x1 - x0), 0.05 * (y1 - y0)  # 10 % grown: 5 % per side
        a, b = max(0, int(x0 - dx)), max(0, int(y0 - dy))
        c, d = min(w, int(np.ceil(x1 + dx))), min(h, int(np.ceil(y1 + dy)))
        best = max(best, float(mask[b:d, a:c].sum() / mask.sum()))
    return best


MIN_AREA = 0.002  # the hoihuman recipe's products.min_area


def run_extra(folder: Path) -> None:
    """worn-held on every photo in ``folder``: what it keeps, drawn into folder/worn-held/."""
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    if not photos:
        raise SystemExit(f"no .jpg/.jpeg/.png/.webp photos in {folder}")
    persons = run_stage(Person(Person.Params(stage="person")), [decoded(p, i) for i, p in enumerate(photos)])
    stage = Products(Products.Params(stage="products", min_area=MIN_AREA))
    out_dir = folder / "worn-held"
    out_dir.mkdir(exist_ok=True)
    held = 0
    for sample, photo in zip(persons, photos, strict=True):
        if not sample.live:
            print(f"{photo.name:24s} person stage: {sample.reason_code}")
            continue
        [out] = run_stage(stage, [sample])
        products = out.ann.get("products", [])
        held += sum(q["label"] == "held-object" for q in products)
        ids = decode_mask(out.members["mask.png"]) if out.members.get("mask.png") else None
        print(f"{photo.name:24s} " + (", ".join(f"{q['label']} {q['area_fraction']:.3f}" for q in products) or str(out.reason_code)))
        panel = draw(decode_rgb(photo.read_bytes()), ids, products, photo.stem, height=500)
        cv2.imwrite(str(out_dir / f"{photo.stem}.jpg"), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"{len(photos)} photos, {held} held objects; look at {out_dir}/ to tell right from wrong")


def draw(rgb: np.ndarray, ids: np.ndarray | None, products: list[dict], title: str, height: int = 300) -> np.ndarray:
    out = rgb.copy()
    thick = max(2, rgb.shape[1] // 200)
    for i, q in enumerate(products, start=1):
        contours, _ = cv2.findContours((ids == i).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, COLOURS.get(q["label"], (255, 255, 255)), thick)
    s = height / out.shape[0]
    out = cv2.resize(out, (round(out.shape[1] * s), height), interpolation=cv2.INTER_AREA)
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--figures", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--extra", type=Path, help="also run worn-held on every photo in this folder (no ground truth)")
    args = ap.parse_args()
    if args.extra is not None:
        run_extra(args.extra)
        return
    persons = run_stage(Person(Person.Params(stage="person")), [decoded(DATA / n, i) for i, n in enumerate(PHOTOS)])
    backends = {
        "embedded": Products(Products.Params(stage="products", detector="embedded", min_area=MIN_AREA)),
        "worn-held": Products(Products.Params(stage="products", min_area=MIN_AREA)),
    }
    jacket = cv2.imread(str(DATA / "grace_hopper_jacket_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    glass = cv2.imread(str(DATA / "drinks_glass_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    panels: dict[str, list[np.ndarray]] = {n: [] for n in PHOTOS}
    print(f"{'backend':10s} {'photo':17s} {'status':8s} {'ms':>6s}  products (label: share inside a person box)")
    for name, stage in backends.items():
        run_stage(stage, [decoded(DATA / "astronaut.png", 99)])  # warm-up
        totals = {"kept": 0, "dropped": 0, "products": 0, "on_person": 0, "ms": []}
        for sample, photo in zip(persons, PHOTOS, strict=True):
            rgb = decode_rgb((DATA / photo).read_bytes())
            # A photo the person stage drops (no person) never reaches products in a build; it
            # runs here anyway, without person boxes, to show what each backend would make of it.
            fresh = decoded(DATA / photo, 0)
            if sample.live:
                fresh.ann["persons"] = sample.ann["persons"]
            started = time.perf_counter()
            [out] = run_stage(stage, [fresh])
            ms = (time.perf_counter() - started) * 1000
            totals["ms"].append(ms)
            products = out.ann.get("products", [])
            ids = decode_mask(out.members["mask.png"]) if out.members.get("mask.png") else None
            boxes = person_boxes(photo, sample.ann.get("persons", []))
            parts = []
            for i, q in enumerate(products, start=1):
                share = share_inside(ids == i, boxes)
                totals["products"] += 1
                totals["on_person"] += share >= 0.5
                extra = ""
                if photo == "grace_hopper.jpg" and q["label"] == "clothes-upper":
                    extra = f", jacket IoU {float(((ids == i) & jacket).sum() / ((ids == i) | jacket).sum()):.2f}"
                if photo == "drinks.jpg" and (ids == i).any():
                    on = float(((ids == i) & glass).sum())
                    if on:
                        extra = f", {on / (ids == i).sum():.2f} on the glass, covers {on / glass.sum():.2f} of it"
                parts.append(f"{q['label']}: {share:.2f}{extra}")
            status = "kept" if out.live else "dropped"
            totals[status] += 1
            note = "" if sample.live else f" (person stage: {sample.reason_code})"
            print(f"{name:10s} {photo:17s} {status:8s} {ms:6.0f}  {'; '.join(parts) or out.reason_code}{note}")
            title = f"{name}: " + (", ".join(q["label"] for q in products) if products else f"dropped ({out.reason_code})")
            panels[photo].append(draw(rgb, ids, products, title))
        print(
            f"{name:10s} kept {totals['kept']}, dropped {totals['dropped']}; {totals['on_person']} of {totals['products']} products "
            f">= 0.5 inside a person box; products stage {np.median(totals['ms']):.0f} ms/image median "
            f"({min(totals['ms']):.0f}-{max(totals['ms']):.0f})"
        )
    if not args.no_figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        for photo, (before, after) in panels.items():
            pair = np.hstack([before, np.full((before.shape[0], 6, 3), 255, np.uint8), after])
            path = args.figures / f"products_{Path(photo).stem}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        print(f"figures: {args.figures}/products_*.jpg")


if __name__ == "__main__":
    main()
