"""Every kind of bad input through a real Ray build: kept (normalised) or failed with its reason."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.datasets.validate import validate
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import build
from tests.faults.corpus import make_corpus

pytestmark = pytest.mark.slow

RECIPE = {
    "name": "faults",
    "stages": [
        {"stage": "decode"},
        {"stage": "resolution", "min_short_side": 8},
        {"stage": "edges", "region": "image"},
    ],
}


def test_bad_input_corpus(ray_local, tmp_path):
    expected = make_corpus(tmp_path / "in")
    out = tmp_path / "out"
    build([str(tmp_path / "in")], out, parse_recipe(RECIPE), progress=False)
    rows = {Path(r["key"]).name: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert sorted(rows) == sorted(expected)
    for name, (status, reason) in expected.items():
        row = rows[name]
        if status == "kept-or-failed":
            assert row["status"] == "kept" or (row["status"] == "failed" and row["reason"]), row
            continue
        assert row["status"] == status, (name, row)
        if reason:
            assert reason in row["reason"], (name, row["reason"])

    samples = {}
    for shard in (out / "shards").glob("*.tar"):
        with tarfile.open(shard) as tar:
            for m in tar:
                key, _, ext = m.name.partition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    # Normalised images: upright, RGB or grey, and the json says what was done.
    for name in ("cmyk.jpg", "grey16.png", "palette.png", "grey_alpha.png", "rgba.png", "animated.gif", "exif6.jpg"):
        members = samples[rows[name]["id"]]
        ann = json.loads(members["json"])
        assert ann["image"]["reencoded"], name
        image_ext = ann["image"]["ext"]
        img = Image.open(__import__("io").BytesIO(members[image_ext]))
        assert img.mode in ("RGB", "L") and img.size == (ann["image"]["width"], ann["image"]["height"])
    assert json.loads(samples[rows["exif6.jpg"]["id"]]["json"])["image"]["width"] == 96  # rotated 90°
    assert "jpg" in samples[rows["jpeg_named.png"]["id"]]  # stored by what it is, not what it is called
    assert "webp" in samples[rows["photo.webp"]["id"]]
    assert validate(out) == []
