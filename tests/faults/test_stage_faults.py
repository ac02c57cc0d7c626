"""A model stage that raises on some samples, and one whose worker is SIGKILLed mid-stage."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hoiforge import stages
from hoiforge.datasets.validate import validate
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import build
from tests.conftest import DATA

pytestmark = pytest.mark.slow


@pytest.fixture
def explode_registered(monkeypatch):
    monkeypatch.setitem(stages.REGISTRY, "explode", "tests.faults.stages:Explode")


@pytest.fixture
def six_photos(tmp_path) -> Path:
    from PIL import Image

    d = tmp_path / "in"
    d.mkdir()
    for name in ("astronaut.png", "basketball1.png", "coffee.png"):
        shutil.copy(DATA / name, d / name)
        Image.open(DATA / name).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(d / f"flip_{name}")
    return d


def recipe(**explode) -> dict:
    return {
        "name": "faults",
        "output": {"shard_max_count": 2},
        "stages": [{"stage": "decode"}, {"stage": "explode", **explode}, {"stage": "edges", "region": "image"}],
    }


def rows(out: Path) -> dict[str, dict]:
    return {Path(r["key"]).name: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}


def tar_keys(out: Path) -> list[str]:
    keys = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            keys += sorted({m.name.partition(".")[0] for m in tar})
    return keys


def test_raising_stage_fails_only_its_samples(ray_local, explode_registered, six_photos, tmp_path):
    out = tmp_path / "out"
    build([str(six_photos)], out, parse_recipe(recipe(raise_on=["coffee.png", "flip_astronaut.png"])), progress=False)
    r = rows(out)
    for name in ("coffee.png", "flip_astronaut.png"):
        assert r[name]["status"] == "failed" and r[name]["stage"] == "explode"
        assert f"RuntimeError: injected failure on {name}" in r[name]["reason"]
    kept = [n for n, row in r.items() if row["status"] == "kept"]
    assert sorted(kept) == ["astronaut.png", "basketball1.png", "flip_basketball1.png", "flip_coffee.png"]
    assert len(tar_keys(out)) == 4 and validate(out) == []


def test_worker_killed_mid_stage_is_retried_without_duplicates(ray_local, explode_registered, six_photos, tmp_path):
    out = tmp_path / "out"
    markers = tmp_path / "markers"
    markers.mkdir()
    build([str(six_photos)], out, parse_recipe(recipe(kill_once_on="basketball1.png", marker_dir=str(markers))), progress=False)
    assert (markers / "killed").exists(), "the worker was never killed: the test did not test anything"
    r = rows(out)
    assert len(r) == 6 and all(row["status"] == "kept" for row in r.values())
    keys = tar_keys(out)
    assert len(keys) == len(set(keys)) == 6
    assert validate(out) == []
