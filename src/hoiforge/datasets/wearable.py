"""Wearable-area labels (`<id>.wear.png`): background 0, visible 1, wearable 2 (ShoeModel's WD set).

"Visible" is shoe surface seen whether the shoe is worn or not; "wearable" is seen only when it
is not worn (the opening, the insole, the inside of the collar). This module reads and checks
human annotations in the two forms annotators hand back:

- a folder of PNG masks named like the images, by their path relative to the input folder
  (``a/001.jpg`` -> ``a/001.png``; label_match.py): single-channel PNGs (L, P, I;16)
  hold the class values 0/1/2 directly (a palette PNG's indices are its values, as VOC-style
  tools write them); RGB/RGBA PNGs are 3-colour masks read through a colour table (default:
  black = 0, red = 1, green = 2; configurable);
- a COCO-style json: ``images`` (file_name, width, height), ``categories`` named ``visible`` and
  ``wearable`` (names configurable), ``annotations`` with polygons, uncompressed RLE (``counts``
  a list) or compressed RLE (``counts`` a string), both decoded by pycocotools' mask API.
  Wearable is painted over visible.

A label is valid when it has the image's size and only the values 0, 1, 2; anything else raises
``LabelError`` whose message is the sample's failure reason.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from hoiforge.datasets.label_match import AmbiguousLabel, LabelIndex

BACKGROUND, VISIBLE, WEARABLE = 0, 1, 2
CLASSES = ("background", "visible", "wearable")
DEFAULT_COLOURS: dict[tuple[int, int, int], int] = {(0, 0, 0): BACKGROUND, (255, 0, 0): VISIBLE, (0, 255, 0): WEARABLE}
DEFAULT_CATEGORIES = {"visible": VISIBLE, "wearable": WEARABLE}
VALUE_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I")


class LabelError(ValueError):
    """A wearable-area label that does not fit its image or the 3 classes; the message says how."""


# -- the member ------------------------------------------------------------------------------
def encode_labels(labels: np.ndarray) -> bytes:
    """`<id>.wear.png` bytes: an 8-bit single-channel PNG of the values 0/1/2."""
    check_values(labels, "wear labels")
    buf = io.BytesIO()
    Image.fromarray(np.asarray(labels, np.uint8), mode="L").save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def decode_labels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L") if img.mode != "L" else img)


# ``ann["wear"]`` of every origin (shoes' bootstrap, wear_labels' annotations or segmenter), as
# typed empties (datasets/schema.py): a build mixing origins still has one json schema.
WEAR_ANNOTATION = {
    "source": "",  # bootstrap, annotation or segmenter:<name>
    "visible": 0,
    "wearable": 0,
    "note": "",
    "file": "",
    "mean_confidence": 0.0,
    "wearable_fraction": 0.0,
    "review": False,
    "review_reasons": [""],
}


def label_counts(labels: np.ndarray) -> dict[str, int]:
    """Pixels per class (the annotation document records them; 0 wearable is the worn bootstrap)."""
    counts = np.bincount(np.asarray(labels, np.uint8).ravel(), minlength=3)
    return {"visible": int(counts[VISIBLE]), "wearable": int(counts[WEARABLE])}


# -- validation ------------------------------------------------------------------------------
def check_values(labels: np.ndarray, what: str) -> None:
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    bad = [(int(v), int(n)) for v, n in zip(values, counts, strict=True) if int(v) not in (BACKGROUND, VISIBLE, WEARABLE)]
    if bad:
        shown = ", ".join(f"{v} ({n} px)" for v, n in bad[:5])
        raise LabelError(f"{what}: unknown class value(s) {shown}; allowed 0 background, 1 visible, 2 wearable")


def check_size(labels: np.ndarray, width: int, height: int, what: str) -> None:
    if labels.shape[:2] != (height, width):
        raise LabelError(f"{what}: label is {labels.shape[1]}x{labels.shape[0]}, image is {width}x{height}")


# -- PNG masks -------------------------------------------------------------------------------
def parse_colours(colours: dict[str, int] | None) -> dict[tuple[int, int, int], int]:
    """A colour table from recipe form {"r,g,b" or "#rrggbb": class} (None: the default)."""
    if not colours:
        return dict(DEFAULT_COLOURS)
    table = {}
    for key, cls in colours.items():
        k = key.strip()
        rgb = tuple(int(k[i : i + 2], 16) for i in (1, 3, 5)) if k.startswith("#") else tuple(int(v) for v in k.split(","))
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb) or cls not in (0, 1, 2):
            raise ValueError(f"colour table entry {key!r}: {cls!r} is not 'r,g,b' or '#rrggbb' -> 0/1/2")
        table[rgb] = int(cls)
    return table


def read_label_png(data: bytes, colours: dict[tuple[int, int, int], int] | None = None, what: str = "label") -> np.ndarray:
    """HxW uint8 class values of a PNG mask (values or 3-colour), checked to be 0/1/2."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # noqa: BLE001 - any decoder error is this label's reason
        raise LabelError(f"{what}: not a readable image ({e})") from None
    with img:
        if img.mode in VALUE_MODES:
            values = np.asarray(img).astype(np.int64)
            check_values(values, what)
            return values.astype(np.uint8)
        rgb = np.asarray(img.convert("RGB"))
    table = colours or DEFAULT_COLOURS
    labels = np.zeros(rgb.shape[:2], np.uint8)
    known = np.zeros(rgb.shape[:2], bool)
    for colour, cls in table.items():
        hit = (rgb == np.array(colour, np.uint8)).all(-1)
        labels[hit], known[hit] = cls, True
    if not known.all():
        colours_seen, counts = np.unique(rgb[~known].reshape(-1, 3), axis=0, return_counts=True)
        shown = ", ".join(f"{tuple(int(v) for v in c)} ({int(n)} px)" for c, n in zip(colours_seen[:5], counts[:5], strict=True))
        raise LabelError(f"{what}: unknown colour(s) {shown}; the colour table knows {sorted(table)}")
    return labels


class LabelFolder:
    """PNG masks in a folder tree, found by the input's path relative to its input folder (label_match)."""

    def __init__(self, folder: str | Path, colours: dict[str, int] | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"wear labels folder {self.folder} does not exist")
        self.colours = parse_colours(colours)
        pngs = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() == ".png" and p.is_file())
        self.index = LabelIndex((p.relative_to(self.folder).as_posix(), p) for p in pngs)

    def labels_for(self, key: str, width: int, height: int) -> tuple[np.ndarray, str] | None:
        """The label of the input whose ``label_key`` (relative path without extension) is ``key``."""
        path = _lookup(self.index, key)
        if path is None:
            return None
        labels = read_label_png(path.read_bytes(), self.colours, what=path.name)
        check_size(labels, width, height, path.name)
        return labels, str(path)


# -- COCO json -------------------------------------------------------------------------------
def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """HxW bool of a COCO RLE (counts as list or compressed string; column-major runs), by pycocotools.

    pycocotools raises on runs longer than the image but leaves the rest of its buffer
    uninitialised when they are shorter, so short runs are caught here: by their sum for a
    list, by comparing the decoded pixels with pycocotools' own area for a string.
    """
    from pycocotools import mask as mask_api

    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        runs = [int(c) for c in counts]
        if sum(runs) != h * w or any(c < 0 for c in runs):
            raise LabelError(f"RLE runs sum to {sum(runs)}, size {w}x{h} needs {h * w}")
        compressed = mask_api.frPyObjects({"size": [h, w], "counts": runs}, h, w)
    else:
        compressed = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else bytes(counts)}
    try:
        decoded = mask_api.decode(compressed)
    except ValueError:
        raise LabelError(f"RLE runs are longer than the size {w}x{h}") from None
    if decoded.max(initial=0) > 1 or int(decoded.sum(dtype=np.int64)) != int(mask_api.area(compressed)):
        raise LabelError(f"RLE runs do not cover the size {w}x{h}")
    return decoded.astype(bool)


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of an HxW bool mask (pycocotools' encoder; for writing annotations and for tests)."""
    from pycocotools import mask as mask_api

    mask = np.asarray(mask, bool)
    encoded = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": encoded["counts"].decode("ascii")}


def rasterise(segmentation: Any, width: int, height: int) -> np.ndarray:
    """HxW bool of a COCO segmentation: a list of polygons, or an RLE dict."""
    if isinstance(segmentation, dict):
        # The declared size first: a crafted RLE must not allocate its own h x w before it is refused.
        declared = [int(v) for v in segmentation.get("size", ())]
        if declared != [height, width]:
            raise LabelError(f"RLE: declared size {declared} (h, w), image is {width}x{height}")
        mask = rle_decode(segmentation)
        check_size(mask, width, height, "RLE")
        return mask
    mask = np.zeros((height, width), np.uint8)
    for poly in segmentation:
        pts = np.asarray(poly, np.float64).reshape(-1, 2)
        if len(pts) < 3:
            raise LabelError(f"polygon with {len(pts)} points (needs >= 3)")
        if (pts < -1).any() or (pts[:, 0] > width + 1).any() or (pts[:, 1] > height + 1).any():
            raise LabelError(f"polygon reaches outside the {width}x{height} image (wrong image or size?)")
        # Sub-pixel vertices: 2 fractional bits, as COCO coordinates are continuous.
        cv2.fillPoly(mask, [np.round(pts * 4).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=2)
    return mask.astype(bool)


class CocoLabels:
    """A COCO-style json of visible/wearable regions, found by the input's relative path (``file_name``)."""

    def __init__(self, path: str | Path, categories: dict[str, int] | None = None):
        self.path = Path(path)
        doc = json.loads(self.path.read_text())
        for key in ("images", "annotations", "categories"):
            if not isinstance(doc.get(key), list):
                raise ValueError(f"{self.path}: COCO json needs a list '{key}'")
        names = {k.lower(): v for k, v in (categories or DEFAULT_CATEGORIES).items()}
        # Unknown category names map to None: a sample using one fails with that reason.
        self.classes = {c["id"]: names.get(str(c["name"]).lower()) for c in doc["categories"]}
        self.category_names = {c["id"]: c["name"] for c in doc["categories"]}
        self.index = LabelIndex((str(im["file_name"]), im) for im in doc["images"])
        self.annotations: dict[Any, list[dict]] = defaultdict(list)
        for a in doc["annotations"]:
            self.annotations[a["image_id"]].append(a)

    def labels_for(self, key: str, width: int, height: int) -> tuple[np.ndarray, str] | None:
        image = _lookup(self.index, key)
        if image is None:
            return None
        what = f"{self.path.name}:{image['file_name']}"
        declared = (int(image.get("width", width)), int(image.get("height", height)))
        if declared != (width, height):
            raise LabelError(f"{what}: annotated at {declared[0]}x{declared[1]}, image is {width}x{height}")
        labels = np.zeros((height, width), np.uint8)
        regions = sorted(self.annotations.get(image["id"], []), key=lambda a: self.classes.get(a["category_id"]) or 0)
        for a in regions:
            cls = self.classes.get(a["category_id"])
            if cls not in (VISIBLE, WEARABLE):
                name = self.category_names.get(a["category_id"], a["category_id"])
                raise LabelError(f"{what}: annotation {a.get('id')} has category {name!r}; known: visible, wearable")
            try:
                labels[rasterise(a["segmentation"], width, height)] = cls  # wearable painted last, over visible
            except LabelError as e:
                raise LabelError(f"{what}: annotation {a.get('id')}: {e}") from None
        return labels, what


def _lookup(index: LabelIndex, key: str):
    try:
        return index.get(key)
    except AmbiguousLabel as e:
        raise LabelError(f"ambiguous label: {e}") from None
