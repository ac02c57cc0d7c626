"""Instance-id maps (`<id>.mask.png`): 0 = background, i = products[i-1].

8-bit PNG while ids fit in a byte, 16-bit above 255 instances, so every reader must decode
through ``decode_mask`` (an RGB decode would clip 16-bit ids).
"""

from __future__ import annotations

import io

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
