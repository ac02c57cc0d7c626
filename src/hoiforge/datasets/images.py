"""Image decoding with the safety limits every stage relies on.

The decode stage normalises every kept image to something any loader reads the same way:
upright (EXIF orientation applied), RGB or greyscale, 8 bits per channel, first frame only.
Images that already are so keep their source bytes untouched; the others are re-encoded and
say why.

Only raster formats are ever decoded (``RASTER_FORMATS``): Pillow picks a plugin from the bytes,
whatever the file is called, so without the list an EPS named ``.jpg`` would reach Ghostscript.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hoiforge.datasets.neardup import phash as perceptual_hash
from hoiforge.datasets.neardup import to_hex

KEEP_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
KEEP_MODES = {"RGB", "L"}

# Pillow plugins Image.open may use, in the order it tries them. MPO (camera stereo JPEG) comes
# through the JPEG plugin, APNG through PNG, PBM/PGM/PPM/PNM through PPM; HEIF needs pillow-heif
# and JXL pillow-jxl-plugin. TGA has no magic number, so it is tried last.
RASTER_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF", "JXL", "JPEG2000", "PSD", "QOI", "PPM", "ICO", "TGA")
# File extensions the input listing takes as images (lower case); any other file is accounted as
# ``dropped`` at ``list`` without being read.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                  ".avif", ".heic", ".heif", ".jxl", ".jp2", ".jpf", ".jpx", ".j2k", ".j2c", ".mpo", ".psd",
                  ".qoi", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".tga")  # fmt: skip
_plugins_ready = False


def register_plugins() -> None:
    """Make the optional decoders (HEIF, JPEG XL) known to Pillow; once per process."""
    global _plugins_ready
    if _plugins_ready:
        return
    Image.init()
    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:  # optional: without it HEIC inputs fail as "not an image"
        pass
    with contextlib.suppress(ImportError):  # optional too: without it JXL inputs fail as "not an image"
        import pillow_jxl  # noqa: F401 - importing registers the JXL plugin
    _plugins_ready = True


def open_image(data: bytes) -> Image.Image:
    """Pillow's lazy image of ``data``, opened only by a raster plugin (UnidentifiedImageError otherwise)."""
    register_plugins()
    return Image.open(io.BytesIO(data), formats=[f for f in RASTER_FORMATS if f in Image.OPEN])


def png_bit_depth(data: bytes) -> int | None:
    """Bits per channel a PNG declares (IHDR), None for other formats."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) > 24:
        return data[24]
    return None


class BadImage(ValueError):
    """The bytes are not a usable image; the message is the manifest's reason, ``code`` its stable code."""

    def __init__(self, message: str, code: str = "corrupt"):
        super().__init__(message)
        self.code = code


@dataclass
class Normalised:
    data: bytes  # bytes to store: the source bytes when nothing had to change
    ext: str  # jpg / png / webp
    width: int
    height: int
    source_format: str
    source_mode: str
    reencoded: str | None  # why the bytes changed, None when they are the source bytes
    phash: str | None = None  # 64-bit perceptual hash (16 hex) of the upright pixels, for near-duplicates
    pixels: Image.Image | None = None  # the decoded image when ``data`` are the source bytes (decoding them again gives these)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise BadImage("empty file (0 bytes)", "empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = open_image(data)
            w, h = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"image too large (decompression bomb guard): {e}", "too_many_pixels") from None
    except UnidentifiedImageError:
        raise BadImage("not an image (no raster decoder recognises the bytes)", "not_an_image") from None
    except Exception as e:  # noqa: BLE001 - any decoder error is a property of the input
        raise BadImage(f"corrupt or truncated image header: {type(e).__name__}: {e}") from None
    if w * h > max_pixels:
        raise BadImage(f"image too large: {w}x{h} = {w * h / 1e6:.1f} MP > limit {max_pixels / 1e6:.1f} MP", "too_many_pixels")
    return img


def _to_keepable_mode(img: Image.Image) -> tuple[Image.Image, str | None]:
    """Convert to RGB or L; returns the image and why it changed (None if unchanged)."""
    mode = img.mode
    if mode in KEEP_MODES:
        return img, None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        grey = np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L"), f"{mode} scaled to 8-bit grey"
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if mode in ("RGBA", "LA", "PA") or img.mode == "RGBA":
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), f"{mode} composited on white"
    return img.convert("RGB"), f"{mode} converted to RGB"


# ``output.image_format``: what each stored image is encoded as ("source": as it came, when it can be).
OUTPUT_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB of any stored image; transparent pixels composited on white, as the decode stage does."""
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def normalise(data: bytes, max_pixels: int, jpeg_quality: int = 95, image_format: str = "source", quality: int = 95) -> Normalised:
    """Validate and normalise one image; raises BadImage with the reason.

    ``image_format`` "jpg", "png" or "webp" stores every image in that format: a source already in
    it with nothing to fix keeps its bytes (a JPEG stays byte-identical under "jpg"), the others are
    re-encoded (JPEG and WebP at ``quality``). The stored image is RGB under all three: grey becomes
    RGB and transparency is composited on white (what every stage sees, ``to_rgb``), so every image
    of a build has 3 channels and loaders stack them.
    """
    if image_format != "source":
        return _normalise_to(data, max_pixels, image_format, quality)
    img, source_format, source_mode, reasons = _opened_upright(data, max_pixels)
    with _corrupt_data_is_bad_image():
        img, why = _to_keepable_mode(img)
    if why:
        reasons.append(why)
    # From the pixels decoded anyway: ~1% of the decode, where a later stage would decode again.
    phash = to_hex(perceptual_hash(to_rgb(img)))  # the pixels every stage sees
    depth = png_bit_depth(data) if source_format == "PNG" else None
    if depth not in (None, 8) and not why:
        # Pillow reads a 16-bit RGB PNG as "RGB" (high bytes), OpenCV as uint16: store 8 bits so every loader agrees.
        reasons.append(f"{depth}-bit per channel PNG stored as 8-bit")
    if source_format not in KEEP_FORMATS:
        reasons.append(f"{source_format} stored as PNG")
    if not reasons:
        return Normalised(data, KEEP_FORMATS[source_format], img.width, img.height, source_format, source_mode, None, phash, img)
    buf = io.BytesIO()
    if source_format == "JPEG":
        img.save(buf, "JPEG", quality=jpeg_quality, subsampling=0)
        ext = "jpg"
    else:
        img.save(buf, "PNG", optimize=False)
        ext = "png"
    return Normalised(buf.getvalue(), ext, img.width, img.height, source_format, source_mode, "; ".join(reasons), phash)


@contextmanager
def _corrupt_data_is_bad_image() -> Iterator[None]:
    """Pixels are decoded lazily: truncated or corrupt data raises many types, all a BadImage."""
    try:
        yield
    except BadImage:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder error is a property of the input
        raise BadImage(f"corrupt or truncated image data: {type(e).__name__}: {e}") from None


def _upright_first_frame(img: Image.Image, reasons: list[str]) -> Image.Image:
    """The first frame of an animation, loaded, with its EXIF orientation applied (each change noted).
    A PSD's frames are its layers (numbered from 1): as opened it is the composite, which is the image."""
    n_frames = getattr(img, "n_frames", 1)
    if n_frames > 1 and img.format != "PSD":
        img.seek(0)
        reasons.append(f"animated: first of {n_frames} frames")
    img.load()
    orientation = img.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        img = ImageOps.exif_transpose(img)
        reasons.append(f"EXIF orientation {orientation} applied")
    return img


def _opened_upright(data: bytes, max_pixels: int) -> tuple[Image.Image, str, str, list[str]]:
    """The first frame upright (EXIF orientation applied), its source format and mode, and the reasons
    (re-encoding causes) found on the way: the first steps of both normalise paths."""
    img = _open(data, max_pixels)
    source_format, source_mode = img.format or "unknown", img.mode
    reasons: list[str] = []
    with _corrupt_data_is_bad_image():
        img = _upright_first_frame(img, reasons)
    return img, source_format, source_mode, reasons


def _normalise_to(data: bytes, max_pixels: int, image_format: str, quality: int) -> Normalised:
    if image_format not in OUTPUT_FORMATS:
        raise ValueError(f"image_format {image_format!r}: use source, {', '.join(OUTPUT_FORMATS)}")
    target = OUTPUT_FORMATS[image_format]
    img, source_format, source_mode, reasons = _opened_upright(data, max_pixels)
    with _corrupt_data_is_bad_image():
        # RGB under every format: a loader stacks the images of a build only when each has the
        # same channels (grey would be (1,H,W) among (3,H,W)); alpha is composited on white, as
        # every stage sees it anyway.
        stored, why = _to_keepable_mode(img)
        if stored.mode != "RGB":
            stored = stored.convert("RGB")
            why = f"{why}; stored as RGB" if why else f"{img.mode} stored as RGB"
    if why:
        reasons.append(why)
    phash = to_hex(perceptual_hash(to_rgb(stored)))
    depth = png_bit_depth(data) if source_format == "PNG" else None
    if depth not in (None, 8) and not why:
        reasons.append(f"{depth}-bit per channel PNG stored as 8-bit")
    if source_format != target:
        reasons.append(f"{source_format} stored as {image_format}" + (f" (quality {quality})" if target != "PNG" else ""))
    if not reasons:
        return Normalised(data, image_format, img.width, img.height, source_format, source_mode, None, phash, stored)
    buf = io.BytesIO()
    if target == "JPEG":
        stored.save(buf, "JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
    elif target == "WEBP":
        stored.save(buf, "WEBP", quality=quality, method=4)
    else:
        stored.save(buf, "PNG", optimize=False)
    return Normalised(buf.getvalue(), image_format, stored.width, stored.height, source_format, source_mode, "; ".join(reasons), phash)


def decode_rgb(data: bytes, size: int | None = None) -> np.ndarray:
    """RGB uint8 HxWx3 of bytes the decode stage already normalised (alpha, if kept, on white).

    ``size``: decode reduced, to a longer side of at least ``size``, where the decoder can skip
    work (JPEG: Pillow's draft mode, DCT scaling by 1/2, 1/4 or 1/8); other formats, or a
    ``size`` at or above the image's, decode in full.
    """
    with open_image(data) as img:
        if size is not None and img.format == "JPEG":
            w, h = img.size
            scale = size / max(w, h)
            if scale < 1:
                # draft() picks the strongest reduction whose result is still >= the requested size.
                img.draft("RGB", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
        return np.asarray(to_rgb(img))


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    with open_image(data) as img:
        return img.size


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array (HxW, HxWx3 or HxWx4)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, "PNG", compress_level=3)
    return buf.getvalue()
