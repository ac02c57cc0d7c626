"""A hoihuman-style build of mixed JPEG/PNG/WebP inputs (RGBA among them), read back by the
loaders people use: Hugging Face ``datasets`` (webdataset builder, what the Hub viewer runs),
``webdataset.WebDataset``, ``wids.ShardListDataset`` and ``ray.data.read_webdataset``; each must
yield exactly the manifest's kept samples, split by split."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hoiforge import stages
from hoiforge.datasets.validate import validate
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import build

from .generated import generated_inputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(stages.REGISTRY, "some_products", "tests.interop_stages:SomeProducts")
    base = tmp_path_factory.mktemp("interop")
    inputs = generated_inputs(base / "inputs", 60)
    recipe = parse_recipe(
        {
            "name": "interop",
            "output": {"shard_max_count": 10, "test_size": 0.2, "image_format": "jpg"},
            "stages": [
                {"stage": "decode"},
                {"stage": "resolution", "min_short_side": 64},
                {"stage": "some_products"},
                {"stage": "edges", "region": "products"},
            ],
        }
    )
    out = base / "out"
    build([str(inputs)], out, recipe, progress=False)
    yield out
    mp.undo()


def kept_ids(out: Path) -> dict[str, set[str]]:
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    by_split: dict[str, set[str]] = {}
    for r in rows:
        if r["status"] == "kept":
            by_split.setdefault(r["split"], set()).add(r["id"])
    return by_split


def shard_files(out: Path, split: str) -> list[str]:
    index = json.loads((out / f"index.{split}.json").read_text())
    return [str(out / s["url"]) for s in index["shardlist"]]


def test_build_is_valid_with_uniform_members(built):
    assert validate(built) == []
    rows = pq.read_table(built / "manifest.parquet").to_pylist()
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == 30 and {r["image_format"] for r in kept} == {"jpg"}
    assert {r["source_format"] for r in kept} == {"JPEG", "PNG", "WEBP"}
    assert all(r["reencoded"] is None for r in kept if r["source_format"] == "JPEG")
    assert set(kept_ids(built)) == {"train", "test"}


def test_hugging_face_datasets_loads_one_row_per_kept_sample(built, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    expected = kept_ids(built)
    files = {split: shard_files(built, split) for split in expected}
    ds = datasets.load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "hf"))
    for split, ids in expected.items():
        assert ds[split].num_rows == len(ids)
        assert set(ds[split]["__key__"]) == ids
        assert {"jpg", "json", "mask.png", "edge.png"} <= set(ds[split].column_names)
    row = ds["train"][0]
    assert row["jpg"].mode == "RGB" and row["json"]["id"] == row["__key__"]
    assert row["mask.png"].size == row["jpg"].size


def test_webdataset_yields_the_manifest(built):
    import webdataset as wds

    for split, ids in kept_ids(built).items():
        keys = [s["__key__"] for s in wds.WebDataset(shard_files(built, split), shardshuffle=False, empty_check=False)]
        assert sorted(keys) == sorted(ids)


def test_wids_yields_the_manifest(built, tmp_path):
    import wids

    for split, ids in kept_ids(built).items():
        ds = wids.ShardListDataset(str(built / f"index.{split}.json"), cache_dir=str(tmp_path / "wids"))
        assert len(ds) == len(ids)
        samples = [ds[i] for i in range(len(ds))]
        assert {s["__key__"] for s in samples} == ids
        assert all({".jpg", ".json", ".mask.png", ".edge.png"} <= set(s) for s in samples)


def test_ray_read_webdataset_yields_the_manifest(built, ray_local):
    import ray

    for split, ids in kept_ids(built).items():
        rows = ray.data.read_webdataset(shard_files(built, split)).take_all()
        assert sorted(r["__key__"] for r in rows) == sorted(ids)
        assert all(r["mask.png"] is not None for r in rows)


def test_hoihuman_recipe_on_mixed_formats_loads_with_hugging_face(ray_local, tmp_path, monkeypatch):
    """The real hoihuman recipe (embedded backends) on the fixture photos stored as JPEG, PNG and
    WebP: Hugging Face reads one row per kept sample, json and all."""
    from PIL import Image, ImageOps

    from hoiforge.pipeline.recipe import load_recipe

    from .conftest import DATA

    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, fmt in (("astronaut", "WEBP"), ("basketball1", "JPEG"), ("coffee", "PNG")):
        img = Image.open(DATA / f"{name}.png").convert("RGB")
        img.save(inputs / f"{name}.{fmt.lower()}", fmt, quality=92)
        ImageOps.mirror(img).save(inputs / f"flip_{name}.png", "PNG")
    out = tmp_path / "out"
    build([str(inputs)], out, load_recipe("hoihuman"), progress=False)
    assert validate(out) == []
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    kept = [r for r in rows if r["status"] == "kept"]
    assert len({r["source_format"] for r in kept}) >= 2, [(r["key"], r["status"], r["reason"]) for r in rows]
    files = {split: shard_files(out, split) for split in kept_ids(out)}
    ds = datasets.load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "hf"))
    for split, ids in kept_ids(out).items():
        assert set(ds[split]["__key__"]) == ids and ds[split].num_rows == len(ids)
        assert {"jpg", "json", "txt", "pose.png", "mask.png", "edge.png"} <= set(ds[split].column_names)
