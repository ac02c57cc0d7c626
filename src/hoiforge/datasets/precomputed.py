"""The precompute members (``<id>.latent.npy``, ``<id>.text.npy``, ``<id>.dino.npy``): sizes and bytes.

Written by the ``precompute`` stage so that training skips the frozen encoders; read by the
loaders when present (and matching the configured models), encoded on the fly otherwise. Both
sides must agree on the geometry, so it lives here:

- the latent is of the image resized so its short side is ``short_side`` (512), each side
  rounded to a multiple of 8 (the VAE's downsampling), aspect kept; a random crop in training
  takes latent offsets, i.e. image offsets that are multiples of 8;
- arrays are stored float16 as ``.npy`` (read with ``allow_pickle=False``: a received shard
  cannot run code).
"""

from __future__ import annotations

import io

import numpy as np

LATENT_FACTOR = 8  # the SD VAE's spatial downsampling


def latent_image_size(width: int, height: int, short_side: int = 512) -> tuple[int, int]:
    """(width, height) the image is resized to before VAE encoding: short side ~``short_side``, multiples of 8."""
    scale = short_side / min(width, height)
    return (
        max(LATENT_FACTOR, int(round(width * scale / LATENT_FACTOR)) * LATENT_FACTOR),
        max(LATENT_FACTOR, int(round(height * scale / LATENT_FACTOR)) * LATENT_FACTOR),
    )


def encode_array(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float16), allow_pickle=False)
    return buf.getvalue()


def decode_array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
