"""The shoe-leg recipe end to end through a real local Ray: accounting invariants and the shoe-leg members."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.datasets.validate import validate
from hoiforge.pipeline.recipe import load_recipe
from hoiforge.pipeline.runner import build

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.slow
pytest.importorskip("mediapipe")


def test_shoeleg_build_accounts_for_every_input(ray_local, tmp_path):
    recipe = load_recipe("shoeleg")
    # Keep basketball1 (its right shoe runs out of the frame) so its members reach a shard.
    stages = [p.model_copy(update={"cut_off": "keep"}) if p.stage == "shoes" else p for p in recipe.stages]
    recipe = recipe.model_copy(update={"stages": stages})
    out = tmp_path / "out"
    inputs = [str(DATA / n) for n in ("basketball1.png", "astronaut.png", "coffee.png")]
    build(inputs, out, recipe, progress=False)
    assert validate(out) == []

    rows = {Path(r["key"]).name: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert sorted(rows) == ["astronaut.png", "basketball1.png", "coffee.png"]
    assert rows["basketball1.png"]["status"] == "kept"
    assert (rows["astronaut.png"]["stage"], rows["astronaut.png"]["status"]) == ("shoes", "dropped")
    assert rows["astronaut.png"]["reason"].startswith("no feet visible")
    assert (rows["coffee.png"]["stage"], rows["coffee.png"]["status"]) == ("person", "dropped")
    index = json.loads((out / "index.json").read_text())
    assert sum(s["nsamples"] for s in index["shardlist"]) == 1
    (tar_path,) = sorted((out / "shards").glob("*.tar"))
    with tarfile.open(tar_path) as tar:
        members = {m.name.partition(".")[2]: tar.extractfile(m).read() for m in tar}
    assert {"jpg", "json", "leg.json", "shoe.png", "shoemask.png", "wear.png", "pose.png"} <= set(members)  # image_format: jpg
    # In the shard: the shoe-only image's alpha is exactly the bootstrap "visible" class.
    alpha = np.asarray(Image.open(io.BytesIO(members["shoe.png"])))[..., 3]
    wear = np.asarray(Image.open(io.BytesIO(members["wear.png"])))
    assert set(np.unique(alpha).tolist()) == {0, 255} and np.array_equal(wear == 1, alpha == 255) and (wear < 2).all()
    assert json.loads(members["leg.json"])["names"][6:] == [
        "left_big_toe",
        "left_small_toe",
        "left_heel",
        "right_big_toe",
        "right_small_toe",
        "right_heel",
    ]


def test_a_shoeleg_report_draws_the_shoe_and_wear_metrics_its_stages_declare(ray_local, tmp_path):
    from hoiforge.report.html import build_report
    from hoiforge.stages.wear_labels import WearLabels
    from tests.shoemodel_fixtures import full_frame_wear_label

    recipe = load_recipe("shoeleg")
    wear = WearLabels.Params(stage="wear_labels", labels_dir=str(full_frame_wear_label(tmp_path / "labels")))
    stages = []
    for p in recipe.stages:
        stages.append(p.model_copy(update={"cut_off": "keep"}) if p.stage == "shoes" else p)
        if p.stage == "shoes":
            stages.append(wear)
    out = tmp_path / "out"
    build([str(DATA / "basketball1.png"), str(DATA / "coffee.png")], out, recipe.model_copy(update={"stages": stages}), progress=False)
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    (kept,) = [r for r in rows if r["status"] == "kept"]

    result = build_report(out)
    figures = {m["name"]: (e["stage"], m) for e in result["figures"]["stage_metrics"] for m in e["metrics"]}
    shoes, area, wearable = figures["shoes"][1], figures["shoe_area"][1], figures["wear_wearable"][1]
    assert figures["shoes"][0] == "shoes" and figures["wear_wearable"][0] == "wear_labels"
    assert shoes["available"] and shoes["counts"] == {str(kept["m.shoes"]): 1} and kept["m.shoes"] >= 1
    assert area["available"] and sum(area["histogram"]["counts"]) == 1 and area["summary"]["max"] == pytest.approx(kept["m.shoe_area"])
    assert wearable["available"] and wearable["summary"]["max"] == kept["m.wear_wearable"] > 0
    page = Path(result["html"]).read_text()
    for stage, name in (("shoes", "shoes"), ("shoes", "shoe_area"), ("wear_labels", "wear_wearable")):
        figure = page.split(f'<figure id="metric-{stage}-{name}">', 1)[1].split("</figure>", 1)[0]
        assert '<img alt="" src="data:image/png;base64,' in figure, name
    assert json.loads((out / "report" / "figures.json").read_text())["stage_metrics"] == result["figures"]["stage_metrics"]


def test_shoeleg_build_loads_with_no_glue(ray_local, tmp_path, monkeypatch):
    """The bundled shoeleg recipe on the grey basketball photo and its mirror (one per split):
    valid, one json schema, RGB images, one views.jpg size, RGBA shoe cut-outs; read by
    ``datasets.load_dataset(OUT)`` (both splits, each alone, streaming) and Ray Data (rows and
    numpy batches)."""
    import ray
    from PIL import ImageOps

    from .test_interop import _fraction, assert_one_schema, kept_ids, shard_files

    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "basketball1.png").write_bytes((DATA / "basketball1.png").read_bytes())  # mode L
    ImageOps.mirror(Image.open(DATA / "basketball1.png")).save(inputs / "mirrored.png")
    fractions = sorted(_fraction(p.read_bytes()) for p in inputs.iterdir())
    recipe = load_recipe("shoeleg")
    stages = [p.model_copy(update={"cut_off": "keep"}) if p.stage == "shoes" else p for p in recipe.stages]
    output = recipe.output.model_copy(update={"test_size": sum(fractions) / 2})  # one input per split
    recipe = recipe.model_copy(update={"stages": stages, "output": output})
    out = tmp_path / "out"
    build([str(inputs)], out, recipe, progress=False)
    assert validate(out) == []
    expected = kept_ids(out)
    assert {split: len(ids) for split, ids in expected.items()} == {"train": 1, "test": 1}
    assert_one_schema(out, recipe)

    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert {split: set(ds[split]["__key__"]) for split in ds} == expected
    for split in ds:
        for row in ds[split]:
            assert row["jpg"].mode == "RGB" and row["shoe.png"].mode == "RGBA" and row["shoemask.png"].mode == "L"
            assert row["views.jpg"].size == (4 * 256, 256) and row["json"]["views"]["tiles"] == 4
            assert row["leg.json"]["names"][6:9] == ["left_big_toe", "left_small_toe", "left_heel"]
    for split in ("test", "train"):
        alone = datasets.load_dataset(str(out), split=split, cache_dir=str(tmp_path / f"hf-{split}"))
        assert set(alone["__key__"]) == expected[split] and alone.features == ds[split].features
    streamed = datasets.load_dataset(str(out), streaming=True)
    for split in ("test", "train"):
        rows = list(streamed[split])
        assert {r["__key__"] for r in rows} == expected[split] and all(r["jpg"].mode == "RGB" for r in rows)

    urls = shard_files(out, "train") + shard_files(out, "test")
    rows = ray.data.read_webdataset(urls).take_all()
    assert len(rows) == 2 and all(r["jpg"].shape[2] == 3 and r["views.jpg"].shape == (256, 1024, 3) for r in rows)
    (batch,) = ray.data.read_webdataset(urls).iter_batches(batch_size=2, batch_format="numpy")
    assert batch["views.jpg"].shape == (2, 256, 1024, 3)  # one strip size: numpy stacks it
    assert batch["shoecrop.png"].shape == (2, 256, 256, 4)
