"""The full HoIHuman recipe (embedded backends) end to end on the fixture photos, through Ray."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hoiforge.datasets.validate import validate
from hoiforge.pipeline.recipe import load_recipe
from hoiforge.pipeline.runner import build

pytestmark = pytest.mark.slow


def test_hoihuman_recipe_end_to_end(ray_local, photo_dir, tmp_path):
    out = tmp_path / "out"
    result = build([str(photo_dir)], out, load_recipe("hoihuman"), progress=False)
    rows = {Path(r["key"]).name: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert len(rows) == 4 and result.stats["inputs_unaccounted"] == 0
    # The astronaut holds a product (her helmet): kept with every annotation of the contract.
    astronaut = rows["astronaut.png"]
    assert astronaut["status"] == "kept", astronaut
    with tarfile.open(out / astronaut["shard"]) as tar:
        members = {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in tar if m.name.startswith(astronaut["id"])}
    assert {"jpg", "json", "txt", "pose.png", "mask.png", "edge.png"} <= set(members)  # image_format: jpg
    ann = json.loads(members["json"])
    assert ann["persons"] and len(ann["persons"][0]["keypoints"]) == 133
    assert ann["products"] and ann["caption"]["backend"] == "template"
    assert set(ann["stages"]) >= {"decode", "resolution", "person", "quality", "products", "cleanup", "pose", "edges", "caption"}
    # No person in the coffee and street photos: dropped by the person filter, never reaching the models.
    for name in ("coffee.png", "scenetext01.jpg"):
        assert rows[name]["status"] == "dropped" and rows[name]["stage"] == "person"
    kept = [r for r in rows.values() if r["status"] == "kept"]
    index = json.loads((out / "index.json").read_text())
    assert sum(s["nsamples"] for s in index["shardlist"]) == len(kept)
    assert validate(out) == []
