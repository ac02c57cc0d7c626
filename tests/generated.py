"""Generated inputs for the shard-layout tests: small images in every stored format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = (("PNG", "png", "RGB"), ("JPEG", "jpg", "RGB"), ("WEBP", "webp", "RGB"), ("PNG", "png", "RGBA"), ("WEBP", "webp", "RGBA"))


def generated_inputs(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` images of 64..128 px in every format; every other one (in listing order) is 48 px
    tall, so a ``resolution: {min_short_side: 64}`` stage keeps exactly half of any run of them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        fmt, ext, mode = FORMATS[i % len(FORMATS)]
        w = int(rng.integers(64, 129))
        h = int(rng.integers(96, 129)) if i % 2 == 0 else 48
        arr = rng.integers(0, 255, (h, w, len(mode)), dtype=np.uint8)
        Image.fromarray(arr, mode).save(folder / f"img-{i:04d}.{ext}", fmt)
    return folder
