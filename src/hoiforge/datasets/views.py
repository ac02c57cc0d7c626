"""Close views (VirtualModel §3.3's v) and whole product masks: how they are stored and read back.

- A close view is a square crop around a box: its centre, side = the box's longer side grown by
  ``margin`` on each side. It may run past the image; the outside is white (product photos are
  shot on white, and DINOv2 then sees a clean background rather than a smeared edge).
- ``<id>.views.jpg`` holds the close views of a sample's first products as ONE horizontal strip of
  ``tiles`` square tiles (tile i = products[i]; black tiles after the last product), so a sample's
  member names never depend on how many products it has (Hugging Face ``datasets`` needs one
  member set per build) and every strip of a build has one size (a loader stacks them). The json
  says how many tiles are products (``views.count``); a product past the strip has its
  ``close_view`` box, cut from the image at load (datasets/vm_sample.py).
- ``products[i]["rle"]`` is the product's whole mask as COCO RLE (pycocotools): the instance map
  gives an overlapping pixel to one product only, a jacket over a dress keeps both whole here.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

WHITE = 255


def square_box(box: list[float] | tuple[float, ...], margin: float) -> list[float]:
    """The square around ``box`` (x0, y0, x1, y1): same centre, side = longer side x (1 + 2 margin)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return [round(cx - side / 2, 2), round(cy - side / 2, 2), round(cx + side / 2, 2), round(cy + side / 2, 2)]


def pixel_square(box: list[float]) -> tuple[int, int, int]:
    """(x0, y0, side) in whole pixels of a square box: what ``crop_square`` cuts and ``paste_square`` fills."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return x0, y0, max(1, x1 - x0, y1 - y0)


def paste_square(crop: np.ndarray, box: list[float], shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel values of a full-resolution square crop (``crop_square`` with size = its side)
    back into an array of ``shape`` (0 outside the box)."""
    x0, y0, side = pixel_square(box)
    if crop.shape[0] != side:
        raise ValueError(f"crop is {crop.shape[0]} px, box is {side} px: paste the crop at its own resolution")
    out = np.zeros((*shape, *crop.shape[2:]), crop.dtype)
    h, w = shape
    sy0, sx0, sy1, sx1 = max(0, y0), max(0, x0), min(h, y0 + side), min(w, x0 + side)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0:sy1, sx0:sx1] = crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return out


def crop_square(rgb: np.ndarray, box: list[float], size: int, fill: int = WHITE) -> np.ndarray:
    """The ``box`` region of an HxWxC image (``fill`` outside it: white for views, 0 = transparent
    for RGBA shoes), resized to ``size`` x ``size``."""
    import cv2

    h, w = rgb.shape[:2]
    x0, y0, side = pixel_square(box)
    canvas = np.full((side, side, *rgb.shape[2:]), fill, rgb.dtype)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(canvas, (size, size), interpolation=interpolation)


def box_of(mask: np.ndarray) -> list[float]:
    """The [x0, y0, x1, y1) pixel box of a non-empty boolean mask."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def to_crop(points: np.ndarray, box: list[float], size: int) -> np.ndarray:
    """N x 3 [x, y, score] image pixels -> the same points in a ``size`` crop of square ``box``."""
    pts = np.asarray(points, dtype=np.float64).copy()
    scale = size / (box[2] - box[0])
    pts[:, 0] = (pts[:, 0] - box[0]) * scale
    pts[:, 1] = (pts[:, 1] - box[1]) * scale
    return pts


def encode_strip(tiles: list[np.ndarray], slots: int | None = None, size: int | None = None, quality: int = 95) -> bytes:
    """One JPEG of ``slots`` square ``size`` tiles side by side (the ``views.jpg`` member): the
    first ``slots`` of ``tiles``, then black ones (default: as many as ``tiles``, at their size)."""
    from PIL import Image

    slots = len(tiles) if slots is None else slots
    size = tiles[0].shape[0] if size is None else size
    strip = np.zeros((size, slots * size, 3), np.uint8)
    for i, tile in enumerate(tiles[:slots]):
        strip[:, i * size : (i + 1) * size] = tile
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def decode_strip(data: bytes, count: int | None = None) -> list[np.ndarray]:
    """The tiles of a ``views.jpg`` (each HxHx3 RGB; the strip's height is the tile size): the
    first ``count`` (the json's ``views.count``: the others are padding), all when None."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        strip = np.asarray(img.convert("RGB"))
    size = strip.shape[0]
    if strip.shape[1] % size:
        raise ValueError(f"views strip is {strip.shape[1]}x{size}: not a row of {size}x{size} tiles")
    tiles = [strip[:, i : i + size] for i in range(0, strip.shape[1], size)]
    return tiles if count is None else tiles[:count]


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE (JSON-ready: counts as str) of an HxW boolean mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """The HxW boolean mask of a ``mask_to_rle`` document."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}).astype(bool)
