"""Shard members turned into browser overlays: transparent where there is nothing to show.

``pose.png`` and ``edge.png`` are drawn on black and ``mask.png`` is an instance-id map
(0 = background, i = products[i-1]); layered over the photo as they are, they would hide it.
Here black/background becomes transparent and mask ids get distinct colours, so the UI can
stack them with plain <img> elements and a CSS opacity toggle.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

from hoiforge.datasets.images import open_image

OVERLAYS = {"pose": "pose.png", "mask": "mask.png", "edge": "edge.png"}
EDGE_COLOR = (255, 255, 0)
THUMB_SIZE = 192


MAX_MASK_ID = 65535  # masks.encode_mask writes at most 16-bit ids
UNKNOWN_ID_COLOR = (255, 255, 255)


@lru_cache(maxsize=8)
def _palette(n: int) -> np.ndarray:
    """n distinct, saturated colours (golden-angle hues), RGB uint8."""
    import colorsys

    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1, 0.85, 1.0)] for i in range(n)], dtype=np.uint8)


def _png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def _open_within(data: bytes, max_pixels: int | None) -> Image.Image:
    """A raster image (allowlisted formats only), refused before decoding when above ``max_pixels``."""
    img = open_image(data)
    if max_pixels is not None and img.width * img.height > max_pixels:
        img.close()
        raise ValueError(f"{img.width}x{img.height} = {img.width * img.height / 1e6:.1f} MP is above the build's pixel limit")
    return img


def overlay_png(kind: str, data: bytes, max_pixels: int | None = None, max_id: int | None = None) -> bytes:
    """An RGBA PNG of a pose/mask/edge member, transparent outside what it draws.

    Mask ids are bounded by ``max_id`` (the sample's product count; never above 16 bits): a received
    mask may be a 32-bit image whose one id of 2^31-1 would ask for a palette of hundreds of GB. Ids
    outside 1..max_id are drawn in one colour (white), the palette never larger than max_id + 2."""
    img = _open_within(data, max_pixels)
    if kind == "mask":
        ids = np.asarray(img.convert("I") if img.mode not in ("L", "P", "I;16", "I") else img, dtype=np.int64)
        top = MAX_MASK_ID if max_id is None else max(0, min(int(max_id), MAX_MASK_ID))
        colors = _palette(top + 2).copy()
        colors[top + 1] = UNKNOWN_ID_COLOR
        rgba = np.zeros((*ids.shape, 4), np.uint8)
        rgba[..., :3] = colors[np.where((ids < 0) | (ids > top), top + 1, ids)]
        rgba[..., 3] = np.where(ids > 0, 150, 0)
        return _png(rgba)
    rgb = np.asarray(img.convert("RGB"))
    on = rgb.max(axis=2) > 0
    rgba = np.zeros((*rgb.shape[:2], 4), np.uint8)
    if kind == "edge":
        rgba[..., :3] = EDGE_COLOR
    else:
        rgba[..., :3] = rgb
    rgba[..., 3] = np.where(on, 255, 0)
    return _png(rgba)


def thumbnail_jpeg(data: bytes, size: int = THUMB_SIZE, max_pixels: int | None = None) -> bytes:
    """A small JPEG of an image, decoded within ``max_pixels`` (the build's limit, not Pillow's default)."""
    from PIL import ImageOps

    img = _open_within(data, max_pixels)
    img.draft("RGB", (2 * size, 2 * size))  # JPEG: decode at a reduced scale, a fraction of the memory
    img.thumbnail((size, size))
    img = ImageOps.exif_transpose(img)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=80)
    return buf.getvalue()
