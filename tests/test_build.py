"""End-to-end builds through a real local Ray on the fixture photos: the invariants of DESIGN.md."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.datasets.validate import validate
from hoiforge.errors import OutputError
from hoiforge.pipeline.recipe import load_recipe
from hoiforge.pipeline.runner import build

pytestmark = pytest.mark.slow


def tar_samples(out: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for tar_path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar:
                key, _, ext = m.name.partition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return samples


def manifest(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def test_demo_build_accounts_for_every_input(ray_local, photo_dir, bad_dir, tmp_path):
    out = tmp_path / "out"
    result = build([str(photo_dir), str(bad_dir)], out, load_recipe("demo"), progress=False)
    rows = manifest(out)
    by_name = {Path(r["key"]).name: r for r in rows}

    # Nothing lost: every listed input exactly once, with a status.
    assert sorted(by_name) == sorted(
        ["astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg", "zero.jpg", "truncated.jpg", "not_an_image.png", "bomb.png"]
    )
    assert len(rows) == 8 and result.stats["inputs"] == 8

    # Real photos: people kept, the cup and the street text dropped by the person filter with a reason.
    assert by_name["astronaut.png"]["status"] == "kept"
    assert by_name["basketball1.png"]["status"] == "kept"
    for name in ("coffee.png", "scenetext01.jpg"):
        assert by_name[name]["status"] == "dropped" and by_name[name]["stage"] == "person"
        assert "0 persons" in by_name[name]["reason"]

    # Bad files: failed at decode, each with its own reason.
    assert by_name["zero.jpg"]["reason"] == "empty file (0 bytes)"
    assert "corrupt" in by_name["truncated.jpg"]["reason"] or "truncated" in by_name["truncated.jpg"]["reason"]
    assert "not an image" in by_name["not_an_image.png"]["reason"]
    assert "too large" in by_name["bomb.png"]["reason"] or "bomb" in by_name["bomb.png"]["reason"]
    assert all(
        by_name[n]["status"] == "failed" and by_name[n]["stage"] == "decode"
        for n in ("zero.jpg", "truncated.jpg", "not_an_image.png", "bomb.png")
    )

    # Kept = sum of nsamples in index.json = samples in the tars.
    index = json.loads((out / "index.json").read_text())
    samples = tar_samples(out)
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == sum(s["nsamples"] for s in index["shardlist"]) == len(samples) == 2

    # Unchanged images are byte-identical to their source, annotations describe them.
    for r in kept:
        members = samples[r["id"]]
        assert members["png"] == Path(r["uri"]).read_bytes()
        ann = json.loads(members["json"])
        assert ann["id"] == r["id"] and ann["source"]["sha256"] == r["sha256"]
        assert ann["persons"] and ann["stages"]["person"]["backend"] == "mediapipe"
        edges = Image.open(io.BytesIO(members["edge.png"]))
        assert edges.size == (ann["image"]["width"], ann["image"]["height"])

    assert validate(out) == []
    stats = json.loads((out / "stats.json").read_text())
    assert stats["kept"] == 2 and stats["failed"] == 4 and stats["dropped"] == 2 and stats["inputs_unaccounted"] == 0
    # Grouped by stable reason codes, with the numbers as parameters, not one line per sentence.
    codes = {code: r["count"] for code, r in stats["by_code"].items()}
    assert codes["decode.empty"] == codes["decode.not_an_image"] == codes["decode.too_many_pixels"] == codes["decode.corrupt"] == 1
    assert sum(codes.values()) == 6 and all(r["example"] for r in stats["by_code"].values())
    assert {r["reason_code"] for r in rows if r["status"] != "kept"} == set(codes)


def test_shards_read_with_webdataset_and_wids(ray_local, photo_dir, tmp_path):
    import webdataset as wds
    import wids

    out = tmp_path / "out"
    build([str(photo_dir)], out, load_recipe("demo"), progress=False)
    urls = [str(out / s["url"]) for s in json.loads((out / "index.json").read_text())["shardlist"]]
    streamed = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert sorted(s["__key__"] for s in streamed) == sorted(r["id"] for r in manifest(out) if r["status"] == "kept")
    assert all(isinstance(s["png"], Image.Image) and "json" in s for s in streamed)

    ds = wids.ShardListDataset(str(out / "index.json"))
    assert len(ds) == len(streamed)
    sample = ds[0]
    assert {".png", ".json", ".edge.png"} <= set(sample)


def test_rerun_resumes_and_adds_new_inputs(ray_local, photo_dir, tmp_path):
    out = tmp_path / "out"
    recipe = load_recipe("demo")
    first = build([str(photo_dir)], out, recipe, progress=False)
    assert first.processed == 4
    again = build([str(photo_dir)], out, recipe, progress=False)
    assert again.processed == 0 and again.stats["kept"] == first.stats["kept"]

    # Incremental: a new photo, and an exact duplicate of a kept one under another name.
    shutil.copy(photo_dir / "astronaut.png", photo_dir / "astronaut_copy.png")
    Image.open(photo_dir / "astronaut.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo_dir / "mirrored.png")
    third = build([str(photo_dir)], out, recipe, progress=False)
    assert third.processed == 2
    rows = {Path(r["key"]).name: r for r in manifest(out)}
    assert rows["mirrored.png"]["status"] == "kept"
    assert rows["astronaut_copy.png"]["status"] == "dropped" and rows["astronaut_copy.png"]["stage"] == "dedup"
    assert len(tar_samples(out)) == third.stats["kept"] == 3
    assert validate(out) == []


def test_other_recipe_on_same_output_is_refused(ray_local, photo_dir, tmp_path):
    out = tmp_path / "out"
    build([str(photo_dir)], out, load_recipe("demo"), progress=False)
    other = load_recipe("demo")
    other = other.model_copy(update={"output": other.output.model_copy(update={"test_size": 0.5})})
    with pytest.raises(OutputError, match="different recipe"):
        build([str(photo_dir)], out, other, progress=False)


def test_tar_inputs_and_test_split(ray_local, photo_dir, tmp_path):
    """Existing WebDataset tars are inputs too; test_size holds out ids by hash."""
    src = tmp_path / "src.tar"
    with tarfile.open(src, "w") as tar:
        for i, p in enumerate(sorted(photo_dir.rglob("*.*"))):
            tar.add(p, arcname=f"sample{i:03d}.{p.suffix[1:]}")
    out = tmp_path / "out"
    recipe = load_recipe("demo")
    recipe = recipe.model_copy(update={"output": recipe.output.model_copy(update={"test_size": 0.5})})
    build([str(src)], out, recipe, progress=False)
    rows = manifest(out)
    assert len(rows) == 4 and all(r["member"].startswith("sample") for r in rows)
    kept = [r for r in rows if r["status"] == "kept"]
    from hoiforge.datasets.contract import split_of

    assert all(r["split"] == split_of(r["id"], 0.5) for r in kept)
    for split in {r["split"] for r in kept}:
        idx = json.loads((out / f"index.{split}.json").read_text())
        assert sum(s["nsamples"] for s in idx["shardlist"]) == sum(r["split"] == split for r in kept)
        assert all(s["url"].startswith(f"shards/{split}-") for s in idx["shardlist"])
