"""One real file per image extension the listing takes, written by the encoders users' files come from.

Pillow writes most of them; pillow-heif writes HEIC, pillow-jxl-plugin JXL; PSD (which Pillow
only reads) is written here by hand in its plain, uncompressed layout.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from hoiforge.datasets.images import register_plugins
from tests.conftest import DATA


def photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    return Image.open(DATA / "astronaut.png").convert("RGB").resize(size)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def psd_bytes(img: Image.Image) -> bytes:
    """A minimal RGB PSD: header, empty colour-mode/resources/layer sections, raw planar image data."""
    w, h = img.size
    rgb = np.asarray(img.convert("RGB"))
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    planes = b"".join(rgb[..., c].tobytes() for c in range(3))
    return header + struct.pack(">I", 0) + struct.pack(">I", 0) + struct.pack(">I", 0) + struct.pack(">H", 0) + planes


def eps_bytes() -> bytes:
    """An Encapsulated PostScript file: Pillow would hand it to Ghostscript if asked to load it."""
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\nnewpath 0 0 moveto 16 16 lineto stroke\n%%EOF\n"


def sixteen_bit_rgb_png(size: tuple[int, int] = (48, 32)) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow opens it as mode "RGB", OpenCV as uint16)."""
    import cv2

    rgb = np.asarray(photo(size)).astype(np.uint16) * 257
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return buf.tobytes()


def every_extension() -> dict[str, bytes]:
    """{file name: bytes} for every image extension of the issue (and the aliases the listing takes).

    Each file holds a slightly different picture (a marked pixel row), so none is an exact
    duplicate of another: duplicates collapse by design, which is not what these files test.
    """
    register_plugins()
    base = photo()
    variants = iter(range(1, 100))

    def img(mode: str = "RGB") -> Image.Image:
        marked = np.asarray(base).copy()
        marked[next(variants) % marked.shape[0], :] = 255
        return Image.fromarray(marked).convert(mode)

    def two_frames() -> list[Image.Image]:
        first = img()
        return [first, first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]

    apng, mpo = two_frames(), two_frames()
    return {
        "photo.avif": _save(img(), "AVIF", quality=80),
        "photo.heic": _save(img(), "HEIF", quality=80),
        "photo.heif": _save(img(), "HEIF", quality=80),
        "photo.jxl": _save(img(), "JXL", quality=90),
        "photo.jp2": _save(img(), "JPEG2000"),
        "photo.jpf": _save(img(), "JPEG2000"),
        "photo.jpx": _save(img(), "JPEG2000"),
        "photo.j2k": _save(img(), "JPEG2000", no_jp2=True),
        "photo.j2c": _save(img(), "JPEG2000", no_jp2=True),
        "photo.mpo": _save(mpo[0], "MPO", save_all=True, append_images=mpo[1:]),
        "photo.apng": _save(apng[0], "PNG", save_all=True, append_images=apng[1:]),
        "photo.psd": psd_bytes(img()),
        "photo.tga": _save(img(), "TGA"),
        "photo.qoi": _save(img(), "QOI"),
        "photo.ppm": _save(img(), "PPM"),
        "photo.pgm": _save(img("L"), "PPM"),
        "photo.pbm": _save(img("1"), "PPM"),
        "photo.pnm": _save(img(), "PPM"),
        "photo.ico": _save(img(), "ICO", sizes=[(64, 64)]),
        "photo.jpg": _save(img(), "JPEG", quality=90),
        "photo.jpeg": _save(img(), "JPEG", quality=90),
        "photo.jpe": _save(img(), "JPEG", quality=90),
        "photo.jfif": _save(img(), "JPEG", quality=90),
        "photo.png": _save(img(), "PNG"),
        "photo.webp": _save(img(), "WEBP"),
        "photo.gif": _save(img(), "GIF"),
        "photo.bmp": _save(img(), "BMP"),
        "photo.tif": _save(img(), "TIFF"),
        "photo.tiff": _save(img(), "TIFF", compression="tiff_lzw"),
    }
