"""Every image format users have is listed and decoded; only raster formats are ever decoded; 8 bits per channel."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hoiforge.datasets.images import IMAGE_SUFFIXES, BadImage, normalise, png_bit_depth
from hoiforge.pipeline.adapter import run_stage
from hoiforge.pipeline.inputs import list_inputs
from hoiforge.stages.decode import DEFAULT_MAX_PIXELS, Decode
from hoiforge.stages.testing import sample_from_file
from tests.faults.formats import eps_bytes, every_extension, sixteen_bit_rgb_png

FILES = every_extension()
ISSUE_EXTENSIONS = {".avif", ".heic", ".heif", ".jxl", ".jp2", ".jpf", ".mpo", ".apng", ".psd", ".tga", ".qoi",
                    ".ppm", ".pgm", ".pbm", ".pnm", ".ico"}  # fmt: skip


def test_the_files_cover_every_extension_the_listing_takes():
    assert {Path(n).suffix for n in FILES} == set(IMAGE_SUFFIXES)
    assert set(IMAGE_SUFFIXES) >= ISSUE_EXTENSIONS


def test_every_extension_is_listed_as_an_image_and_decodes(tmp_path):
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    refs = list_inputs([str(tmp_path)])
    assert sorted(Path(r.key).name for r in refs) == sorted(FILES)
    assert all(r.skip is None and r.error is None for r in refs)

    stage = Decode(Decode.Params(stage="decode"))
    decoded = run_stage(stage, [sample_from_file(tmp_path / n, i) for i, n in enumerate(sorted(FILES))])
    for name, s in zip(sorted(FILES), decoded, strict=True):
        assert s.status == "ok", (name, s.reason)
        with Image.open(io.BytesIO(s.image)) as img:
            assert img.mode in ("RGB", "L") and img.size == (s.ann["image"]["width"], s.ann["image"]["height"]), name
        assert s.ann["image"]["ext"] in ("jpg", "png", "webp")
    formats = {Path(n).suffix: s.ann["image"]["source_format"] for n, s in zip(sorted(FILES), decoded, strict=True)}
    assert formats[".heic"] == "HEIF" and formats[".jxl"] == "JXL" and formats[".avif"] == "AVIF"
    assert formats[".psd"] == "PSD" and formats[".jp2"] == "JPEG2000" and formats[".mpo"] == "MPO" and formats[".qoi"] == "QOI"


def test_postscript_named_jpg_never_reaches_a_non_raster_plugin():
    data = eps_bytes()
    with Image.open(io.BytesIO(data)) as img:  # Pillow alone would take it (and hand it to Ghostscript on load)
        assert img.format == "EPS"
    with pytest.raises(BadImage, match="not an image"):
        normalise(data, DEFAULT_MAX_PIXELS)


def test_sixteen_bit_rgb_png_is_stored_with_8_bits_so_every_loader_reads_the_same_pixels():
    data = sixteen_bit_rgb_png()
    assert png_bit_depth(data) == 16 and Image.open(io.BytesIO(data)).mode == "RGB"  # Pillow hides the depth
    n = normalise(data, DEFAULT_MAX_PIXELS)
    assert n.reencoded and "16-bit" in n.reencoded and png_bit_depth(n.data) == 8
    pil = np.asarray(Image.open(io.BytesIO(n.data)).convert("RGB"))
    opencv = cv2.imdecode(np.frombuffer(n.data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert opencv.dtype == np.uint8 and np.array_equal(pil, opencv)
    # the 8 bits are the source's top byte: nothing shifted or rescaled
    source = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert np.array_equal(pil, (source >> 8).astype(np.uint8))


def test_low_bit_depth_grey_png_is_stored_with_8_bits():
    buf = io.BytesIO()
    Image.fromarray((np.arange(64).reshape(8, 8) % 4 * 85).astype(np.uint8), "L").save(buf, "PNG", bits=2)
    assert png_bit_depth(buf.getvalue()) == 2
    n = normalise(buf.getvalue(), DEFAULT_MAX_PIXELS)
    assert png_bit_depth(n.data) == 8 and "2-bit" in n.reencoded
