"""Instance-id maps (`<id>.mask.png`): 0 = background, i = products[i-1].

8-bit PNG while ids fit in a byte, 16-bit above 255 instances, so every reader must decode
through ``decode_mask`` (an RGB decode would clip 16-bit ids).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def encode_mask(ids: np.ndarray) -> bytes:
    """PNG bytes of an HxW instance-id map (8-bit if max id <= 255, else 16-bit)."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"instance map must be HxW, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() > 65535):
        raise ValueError("instance ids must be in 0..65535")
    top = int(ids.max()) if ids.size else 0
    img = Image.fromarray(ids.astype(np.uint8)) if top <= 255 else Image.fromarray(ids.astype(np.uint16))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    """HxW instance-id map (uint8 or uint16) of ``encode_mask`` bytes; a 0/255 PNG reads as 0/255."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(img, dtype=np.uint16 if img.mode.startswith("I;16") else np.int32).astype(np.uint16)
        if img.mode == "L":
            return np.asarray(img)
        return np.asarray(img.convert("RGB"))[..., 0]  # colour-coded maps: first channel, as edges did before


class MaskError(ValueError):
    """A product's RLE does not describe a mask of its image (wrong size, runs that do not cover it)."""


def product_rle(product: Any) -> Any:
    """A product's RLE, or None where it has none: absent, or the typed empty ``{"size": [], "counts": ""}``
    that one-schema-per-build writes for a product without a whole mask (datasets/schema.py)."""
    rle = product.get("rle") if isinstance(product, dict) else None
    if rle is None or (isinstance(rle, dict) and rle.get("size") == [] and rle.get("counts") in ("", [])):
        return None
    return rle


def decode_rle(rle: Any, height: int, width: int) -> np.ndarray:
    """HxW bool mask of a COCO RLE (``products[i].rle``) that must be exactly ``height`` x ``width``.

    The size is checked before pycocotools sees it: its decoder allocates ``size[0] x size[1]`` bytes on
    trust (``[3e9, 3e9]`` is a SIGSEGV, ``[20000, 20000]`` 400 MB per product). Runs that do not cover the
    image exactly are refused too: pycocotools raises on long runs but leaves short ones uninitialised.
    Every reader of received RLEs (loader, eval, validate) decodes through here.
    """
    from pycocotools import mask as mask_utils

    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise MaskError("rle must be an object with size and counts")
    size = rle["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int for v in size)):
        raise MaskError("rle.size must be [height, width] integers")
    if size != [height, width]:
        shown = [str(v)[:12] for v in size]
        raise MaskError(f"rle.size [{', '.join(shown)}] is not the image's [{height}, {width}]")
    counts = rle["counts"]
    try:
        if isinstance(counts, list):
            runs = [int(c) for c in counts]
            if any(c < 0 for c in runs) or sum(runs) != height * width:
                raise MaskError(f"rle runs do not cover the image's {height}x{width} pixels")
            compressed = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
        elif isinstance(counts, str):
            compressed = {"size": [height, width], "counts": counts.encode("ascii")}
        else:
            raise MaskError("rle.counts must be a string or a list of runs")
        decoded = mask_utils.decode(compressed)
    except (ValueError, TypeError, UnicodeEncodeError) as e:
        raise e if isinstance(e, MaskError) else MaskError(f"rle.counts does not decode: {str(e)[:80]}") from None
    if decoded.max(initial=0) > 1 or int(decoded.sum(dtype=np.int64)) != int(mask_utils.area(compressed)):
        raise MaskError(f"rle runs do not cover the image's {height}x{width} pixels")
    return decoded.astype(bool)
