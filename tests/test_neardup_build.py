"""Near-duplicates through real Ray builds: blocks, write tasks and a resumed run with new inputs."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hoiforge.datasets.neardup import from_hex, hamming
from hoiforge.datasets.validate import validate
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import build
from tests.test_neardup import DATA, PHOTOS, variants

pytestmark = pytest.mark.slow

RECIPE = {
    "name": "nd-build",
    "output": {"shard_max_count": 2, "test_size": 0.5},
    "stages": [
        {"stage": "decode"},
        {"stage": "resolution", "min_short_side": 64},
        {"stage": "neardup", "max_distance": 8, "bands": 9, "tables": 1},
    ],
}


def test_build_drops_near_duplicates_across_runs(ray_local, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    keeper = {}
    for name in PHOTOS:
        (first / name).write_bytes((DATA / name).read_bytes())
        for kind, data in variants(name).items():
            folder = (
                first if kind == "q60" else second
            )  # run 1: originals + re-encodes (listed after them: "_" > "."); run 2: resizes + crops
            path = folder / f"{Path(name).stem}_{kind}.{'jpg' if kind == 'q60' else 'png'}"
            path.write_bytes(data)
            keeper[path.name] = name
    out = tmp_path / "out"
    recipe = parse_recipe(RECIPE)
    build([str(first)], out, recipe, progress=False)
    result = build([str(first), str(second)], out, recipe, progress=False)  # resumed output, new inputs
    assert result.processed == 2 * len(PHOTOS)

    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    by_name = {Path(r["key"]).name: r for r in rows}
    assert len(rows) == 4 * len(PHOTOS) and validate(out) == []
    for name, original in keeper.items():
        r = by_name[name]
        assert r["status"] == "dropped" and r["reason_code"] == "neardup.near_duplicate", name
        assert json.loads(r["reason_params"])["keep_id"] == by_name[original]["id"]
    kept = [r for r in rows if r["status"] == "kept"]
    assert sorted(Path(r["key"]).name for r in kept) == sorted(PHOTOS)
    assert {r["split"] for r in kept} == {"train", "test"}
    hashes = from_hex([r["m.phash"] for r in kept])
    assert all(int(hamming(hashes[a], hashes[b])) > 8 for a, b in combinations(range(len(kept)), 2))
    index = json.loads((out / "index.json").read_text())
    assert sum(s["nsamples"] for s in index["shardlist"]) == len(kept) == result.stats["kept"]
