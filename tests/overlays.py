"""Known text drawn onto the real fixture photos, for the cleanup tests (the clean photo is the truth).

Pillow's bundled font (``load_default(size=...)``) is used so the pictures are the same on every
machine, with no system font needed.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DATA = Path(__file__).parent / "data"


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def sale_overlay(name: str = "astronaut.png") -> Image.Image:
    """A shop's overlay: a "SALE 50% OFF" headline across the photo and a corner watermark."""
    img = Image.open(DATA / name).convert("RGB")
    w, h = img.size
    ImageDraw.Draw(img).text(
        (w / 2, 0.45 * h), "SALE 50% OFF", font=ImageFont.load_default(size=int(0.1 * h)),
        fill=(255, 230, 0), anchor="mm", stroke_width=2, stroke_fill=(120, 0, 0),
    )  # fmt: skip
    mark = Image.new("RGBA", img.size, (0, 0, 0, 0))
    ImageDraw.Draw(mark).text(
        (w - 8, h - 8), "shopmark", font=ImageFont.load_default(size=int(0.045 * h)), fill=(255, 255, 255, 170), anchor="rd"
    )  # a semi-transparent watermark, as shops stamp them
    return Image.alpha_composite(img.convert("RGBA"), mark).convert("RGB")


def print_on(photo: str | Image.Image, text: str, at: tuple[int, int], size: int, colour=(20, 30, 90)) -> Image.Image:
    """Text printed on something in the photo (a suit, a cup), at pixel ``at`` (centre)."""
    img = (Image.open(DATA / photo) if isinstance(photo, str) else photo.copy()).convert("RGB")
    ImageDraw.Draw(img).text(at, text, font=ImageFont.load_default(size=size), fill=colour, anchor="mm", stroke_width=1, stroke_fill=colour)
    return img


def changed_pixels(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, threshold: int = 40) -> np.ndarray:
    """HxW bool: where two pictures differ clearly (the drawn text and its outline)."""
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return diff.max(axis=-1) > threshold


def unreadable_watermark(name: str = "astronaut.png", word: str = "WATERMARK") -> Image.Image:
    """A mirrored white watermark in the bottom-right corner: PP-OCR's detector finds it with a
    confident box (~0.85), its recogniser reads it poorly (score ~0.3, below the usual 0.5)."""
    from PIL import ImageOps

    img = Image.open(DATA / name).convert("RGB")
    w, h = img.size
    mark = Image.new("L", (int(0.5 * w), int(0.09 * h)), 0)
    ImageDraw.Draw(mark).text(
        (mark.width / 2, mark.height / 2), word, font=ImageFont.load_default(size=int(0.06 * h)), fill=255, anchor="mm"
    )
    white = Image.new("RGB", mark.size, (255, 255, 255))
    img.paste(white, (w - mark.width - 10, h - mark.height - 10), ImageOps.mirror(mark))
    return img
