"""decode: every awkward image either becomes an upright RGB/grey sample or fails with a reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hoiforge.datasets.images import BadImage, normalise
from hoiforge.stages.decode import DEFAULT_MAX_PIXELS
from hoiforge.stages.testing import decoded, sample_from_file

from .conftest import DATA, png_with_declared_size

ASTRONAUT = Image.open(DATA / "astronaut.png").convert("RGB")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_plain_rgb_png_and_jpeg_keep_their_bytes():
    for path in (DATA / "astronaut.png", DATA / "scenetext01.jpg"):
        data = path.read_bytes()
        n = normalise(data, DEFAULT_MAX_PIXELS)
        assert n.data == data and n.reencoded is None


def test_greyscale_png_is_kept_as_is():
    data = (DATA / "basketball1.png").read_bytes()
    n = normalise(data, DEFAULT_MAX_PIXELS)
    assert n.data == data and n.source_mode == "L"


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_is_applied_and_said(orientation):
    small = ASTRONAUT.resize((64, 32))
    exif = Image.Exif()
    exif[0x0112] = orientation
    n = normalise(encode(small, "JPEG", exif=exif.tobytes()), DEFAULT_MAX_PIXELS)
    rotated = orientation in (5, 6, 7, 8)
    assert (n.width, n.height) == ((32, 64) if rotated else (64, 32))
    assert f"EXIF orientation {orientation}" in n.reencoded
    out = Image.open(io.BytesIO(n.data))
    assert out.size == (n.width, n.height) and out.getexif().get(0x0112, 1) in (1, None)


def test_cmyk_jpeg_becomes_rgb_jpeg():
    n = normalise(encode(ASTRONAUT.convert("CMYK"), "JPEG"), DEFAULT_MAX_PIXELS)
    assert n.ext == "jpg" and "CMYK" in n.reencoded
    assert Image.open(io.BytesIO(n.data)).mode == "RGB"


def test_16bit_grey_is_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 256 * 16).reshape(16, 256)).astype(np.uint16)
    n = normalise(encode(Image.fromarray(ramp), "PNG"), DEFAULT_MAX_PIXELS)
    grey = np.asarray(Image.open(io.BytesIO(n.data)))
    assert grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255
    assert "8-bit" in n.reencoded


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA"])
def test_palette_and_alpha_become_rgb(mode):
    img = ASTRONAUT.resize((40, 40)).convert(mode)
    n = normalise(encode(img, "PNG"), DEFAULT_MAX_PIXELS)
    assert Image.open(io.BytesIO(n.data)).mode == "RGB" and mode in n.reencoded


def test_animated_gif_keeps_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    n = normalise(buf.getvalue(), DEFAULT_MAX_PIXELS)
    assert "first of 3 frames" in n.reencoded and n.ext == "png"
    r, g, b = Image.open(io.BytesIO(n.data)).getpixel((5, 5))
    assert r > 200 and g < 50 and b < 50


def test_webp_is_kept():
    data = encode(ASTRONAUT.resize((64, 64)), "WEBP")
    n = normalise(data, DEFAULT_MAX_PIXELS)
    assert n.ext == "webp" and n.data == data


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"GIF89a not really", "not an image"),
        ((DATA / "scenetext01.jpg").read_bytes()[:4000], "corrupt"),
        (png_with_declared_size(30000, 30000), "too large"),
    ],
)
def test_bad_bytes_fail_with_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        normalise(data, DEFAULT_MAX_PIXELS)


def test_middle_corrupted_jpeg_fails_or_decodes_whole():
    data = bytearray((DATA / "scenetext01.jpg").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 2000] = b"\xff" * 2000
    try:
        n = normalise(bytes(data), DEFAULT_MAX_PIXELS)
    except BadImage as e:
        assert "corrupt" in str(e)
    else:  # libjpeg recovers some corruptions; then the image must be whole and sized
        assert (n.width, n.height) == (800, 600)


def test_decode_stage_records_the_image_and_fails_bad_files(tmp_path: Path):
    s = decoded(DATA / "coffee.png")
    assert s.live and s.ann["image"]["width"] == 600 and s.ann["id"] == s.ann["source"]["sha256"][:20]
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"")
    from hoiforge.pipeline.adapter import run_stage
    from hoiforge.stages.decode import Decode

    [out] = run_stage(Decode(Decode.Params(stage="decode")), [sample_from_file(bad)])
    assert out.status == "failed" and out.stage == "decode" and out.image is None


def test_psd_decodes_its_composite_image():
    """A layered PSD (Pillow's hopper.psd: a composite and one layer, so two "frames") is the
    composite, as Pillow opens it: not a seek to frame 0, which PSD numbers from 1."""
    data = (DATA / "hopper.psd").read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        composite = np.asarray(img.convert("RGB"))
        assert img.format == "PSD" and img.n_frames == 2
    for fmt in ("source", "png"):
        n = normalise(data, DEFAULT_MAX_PIXELS, image_format=fmt)
        assert (n.width, n.height, n.source_format, n.ext) == (128, 128, "PSD", "png") and "PSD stored as" in n.reencoded
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(n.data))), composite)
    s = decoded(DATA / "hopper.psd")
    assert s.live and s.rgb().shape == (128, 128, 3)
