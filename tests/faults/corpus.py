"""A generated corpus of awkward and broken inputs, each with the outcome it must have."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import DATA, png_with_declared_size


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def make_corpus(folder: Path) -> dict[str, tuple[str, str | None]]:
    """Write the corpus into ``folder``; returns {file name: (status, reason substring)}."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(DATA / "astronaut.png").convert("RGB").resize((128, 96))
    jpeg = (DATA / "scenetext01.jpg").read_bytes()
    corrupt_middle = bytearray(jpeg)
    corrupt_middle[len(jpeg) // 2 : len(jpeg) // 2 + 3000] = bytes(3000)
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    grey16 = Image.fromarray((np.linspace(0, 65535, 96 * 128).reshape(96, 128)).astype(np.uint16))

    files: dict[str, tuple[bytes, tuple[str, str | None]]] = {
        "zero.jpg": (b"", ("failed", "empty file")),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], ("failed", "corrupt or truncated")),
        "middle_corrupt.jpg": (bytes(corrupt_middle), ("kept-or-failed", None)),
        "text_named.png": (b"this is not an image\n" * 50, ("failed", "not an image")),
        "jpeg_named.png": (_save(photo, "JPEG"), ("kept", None)),
        "cmyk.jpg": (_save(photo.convert("CMYK"), "JPEG"), ("kept", None)),
        "grey16.png": (_save(grey16, "PNG"), ("kept", None)),
        "palette.png": (_save(photo.convert("P"), "PNG"), ("kept", None)),
        "grey_alpha.png": (_save(photo.convert("LA"), "PNG"), ("kept", None)),
        "rgba.png": (_save(photo.convert("RGBA"), "PNG"), ("kept", None)),
        "animated.gif": (gif.getvalue(), ("kept", None)),
        "tiny.png": (_save(photo.resize((4, 3)), "PNG"), ("dropped", "short side 3 < 8")),
        "bomb.png": (png_with_declared_size(30000, 30000), ("failed", "too large")),
        "photo.webp": (_save(photo, "WEBP"), ("kept", None)),
    }
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        files[f"exif{orientation}.jpg"] = (_save(photo, "JPEG", exif=exif.tobytes()), ("kept", None))
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: outcome for name, (_, outcome) in files.items()}
