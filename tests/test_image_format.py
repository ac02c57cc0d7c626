"""output.image_format: one stored format per build, JPEGs byte-identical under jpg, RGB under every
format (alpha on white, grey as RGB), the re-encode recorded in the json and the manifest."""

from __future__ import annotations

import io
from itertools import count

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.datasets.images import decode_rgb, normalise
from hoiforge.datasets.layout import OutLayout
from hoiforge.errors import RecipeError
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import instantiate
from hoiforge.pipeline.writer import write_part
from hoiforge.stages.testing import sample_from_file


def encoded(fmt: str, mode: str = "RGB", size=(40, 30)) -> bytes:
    rng = np.random.default_rng(1)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    if mode == "RGBA":
        arr[:10, :10, 3] = 0  # a transparent corner
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def stored_format(data: bytes) -> tuple[str, str]:
    with Image.open(io.BytesIO(data)) as img:
        return img.format, img.mode


def test_jpg_keeps_jpeg_bytes_and_reencodes_the_others():
    jpeg = encoded("JPEG")
    same = normalise(jpeg, 10**8, image_format="jpg")
    assert same.data == jpeg and same.reencoded is None and same.ext == "jpg"
    for fmt in ("PNG", "WEBP"):
        out = normalise(encoded(fmt), 10**8, image_format="jpg", quality=80)
        assert out.ext == "jpg" and stored_format(out.data) == ("JPEG", "RGB")
        assert out.source_format == fmt and f"{fmt} stored as jpg (quality 80)" in out.reencoded


def test_alpha_is_composited_on_white_and_every_format_stores_rgb():
    rgba_png = encoded("PNG", "RGBA")
    for fmt, pil in (("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")):
        stored = normalise(rgba_png, 10**8, image_format=fmt)
        assert stored_format(stored.data) == (pil, "RGB") and "RGBA composited on white" in stored.reencoded
        assert decode_rgb(stored.data)[:8, :8].min() > 240  # the transparent corner is white


def test_grey_sources_are_stored_as_rgb_under_every_format():
    """A loader stacks a build's images only when each has 3 channels: a grey PNG or JPEG under
    jpg/png/webp comes out RGB, with the same grey in each channel."""
    grey = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(30, 40)
    for src in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(grey, "L").save(buf, src)
        for fmt, pil in (("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")):
            out = normalise(buf.getvalue(), 10**8, image_format=fmt)
            assert stored_format(out.data) == (pil, "RGB") and out.source_mode == "L" and "L stored as RGB" in out.reencoded
            rgb = np.asarray(Image.open(io.BytesIO(out.data)))
            assert rgb.shape == (30, 40, 3)
            if (src, fmt) == ("PNG", "png"):  # lossless: the grey itself in each channel
                assert (rgb == grey[..., None]).all()
    as_source = normalise(buf.getvalue(), 10**8)  # source keeps what it can: grey stays grey
    assert stored_format(as_source.data) == ("JPEG", "L")


def test_source_keeps_each_format():
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")):
        data = encoded(fmt)
        out = normalise(data, 10**8)
        assert out.data == data and out.ext == ext


def test_recipe_output_reaches_the_decode_stage_and_the_manifest(tmp_path):
    recipe = parse_recipe({"name": "t", "output": {"image_format": "webp", "image_quality": 70}, "stages": [{"stage": "decode"}]})
    [decode] = instantiate(recipe)
    assert (decode.params.image_format, decode.params.image_quality) == ("webp", 70)
    assert "image_format" not in decode.params.model_dump()  # recipe.json holds it once, under output
    paths = []
    for i, fmt in enumerate(("JPEG", "PNG", "WEBP")):
        p = tmp_path / f"in{i}.{fmt.lower()}"
        p.write_bytes(encoded(fmt))
        paths.append(p)
    samples = [sample_from_file(p, i) for i, p in enumerate(paths)]
    decode.setup()
    decode.process(samples)
    assert {s.ann["image"]["ext"] for s in samples} == {"webp"}
    layout = OutLayout(tmp_path / "out")
    layout.make()
    seq = count()
    write_part(layout, recipe.output, samples, lambda split: next(seq))
    rows = pq.read_table(next(layout.parts.glob("part-*.parquet"))).to_pylist()
    assert [(r["image_format"], r["source_format"]) for r in rows] == [("webp", "JPEG"), ("webp", "PNG"), ("webp", "WEBP")]
    assert rows[0]["reencoded"].startswith("JPEG stored as webp") and rows[2]["reencoded"] is None


def test_unknown_image_format_is_a_recipe_error():
    with pytest.raises(RecipeError, match="image_format"):
        parse_recipe({"name": "t", "output": {"image_format": "gif"}, "stages": [{"stage": "decode"}]})
