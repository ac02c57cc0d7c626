"""A hoihuman-style build of mixed JPEG/PNG/WebP inputs (RGBA among them), read back by the
loaders people use: Hugging Face ``datasets`` (webdataset builder, what the Hub viewer runs),
``webdataset.WebDataset``, ``wids.ShardListDataset`` and ``ray.data.read_webdataset``; each must
yield exactly the manifest's kept samples, split by split.

And a build whose splits differ in what the stages found (train: text cleaned, products
inpainted, images re-encoded, a grey PNG; test: one JPEG with none of it), loaded with no glue:
``datasets.load_dataset(OUT)`` through the dataset card, in either split order and streaming,
Ray Data rows and numpy batches; one json schema for every sample (datasets/schema.py)."""

from __future__ import annotations

import json
import shutil
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


# -- one schema, a dataset card, RGB images: loaded with no glue ---------------------------------
def _fraction(data: bytes) -> float:
    """Where an input's id puts it among the splits (contract.split_of: test below test_size)."""
    from hoiforge.datasets.contract import sample_id

    return int(sample_id(data)[:8], 16) / 2**32


def split_inputs(folder: Path) -> tuple[Path, float]:
    """Train: PNG/WebP photos with a shop's text overlay (cleanup removes it, re-encoding them,
    and inpaints over a product), and the grey basketball PNG; test: a plain picture as a JPEG
    (no text, nothing inpainted, kept byte for byte under image_format: jpg). Returns the folder
    and the test_size that puts exactly the JPEG in the test split."""
    import io

    import numpy as np
    from PIL import Image

    from .conftest import DATA
    from .overlays import png_bytes, sale_overlay

    folder.mkdir(parents=True, exist_ok=True)
    train = {
        "a_astronaut_sale.png": png_bytes(sale_overlay("astronaut.png")),
        "b_basketball_grey.png": (DATA / "basketball1.png").read_bytes(),
    }
    webp = io.BytesIO()
    sale_overlay("coffee.png").save(webp, "WEBP", quality=90)
    train["c_coffee_sale.webp"] = webp.getvalue()
    lowest = min(_fraction(d) for d in train.values())
    # A plain picture (a gradient with a disk: nothing an OCR reads; the coffee photo's latte
    # art reads as a character).
    y, x = np.mgrid[0:160, 0:200]
    plain = np.stack([x * 255 // 200, y * 255 // 160, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    plain[(x - 100) ** 2 + (y - 80) ** 2 < 40**2] = (200, 60, 40)
    for quality in range(80, 100):  # a JPEG whose id sorts below every train input's
        buf = io.BytesIO()
        Image.fromarray(plain).save(buf, "JPEG", quality=quality)
        if _fraction(buf.getvalue()) < lowest:
            break
    else:
        raise AssertionError("no JPEG quality gave an id below the train inputs'")
    for name, data in {**train, "d_plain.jpg": buf.getvalue()}.items():
        (folder / name).write_bytes(data)
    return folder, (_fraction(buf.getvalue()) + lowest) / 2


@pytest.fixture(scope="module")
def split_build(ray_local, tmp_path_factory):
    pytest.importorskip("rapidocr_onnxruntime")
    mp = pytest.MonkeyPatch()
    mp.setitem(stages.REGISTRY, "some_products", "tests.interop_stages:SomeProducts")
    base = tmp_path_factory.mktemp("interop-splits")
    inputs, test_size = split_inputs(base / "inputs")
    recipe = parse_recipe(
        {
            "name": "interop-splits",
            "description": "Mixed formats, text on the train photos only.",
            "output": {"test_size": test_size, "image_format": "jpg"},
            "stages": [
                {"stage": "decode"},
                {"stage": "resolution", "min_short_side": 64},
                {"stage": "some_products"},  # input index 0 and 3: the astronaut (under the text) and the test JPEG
                {"stage": "cleanup", "inpaint": "telea", "products": {"on_inpainted": "flag", "max_inpainted": 0.1}},
            ],
        }
    )
    out = base / "out"
    build([str(inputs)], out, recipe, progress=False)
    yield out, recipe
    mp.undo()


def tar_jsons(out: Path) -> dict[str, dict[str, dict]]:
    """split -> id -> json member -> its document, read from the shards themselves."""
    import tarfile

    found: dict[str, dict[str, dict]] = {}
    for split in ("train", "test"):
        if not (out / f"index.{split}.json").exists():
            continue
        for url in shard_files(out, split):
            with tarfile.open(url) as tar:
                for m in tar:
                    key, _, ext = m.name.partition(".")
                    if ext.endswith("json"):
                        found.setdefault(split, {}).setdefault(key, {})[ext] = json.loads(tar.extractfile(m).read())
    return found


def assert_one_schema(out: Path, recipe) -> None:
    """Every json member of every sample has every declared key, typed, and no other."""
    from hoiforge.datasets.schema import ShapeCheck, build_template, conform, member_template
    from hoiforge.pipeline.runner import instantiate

    template = build_template(instantiate(recipe))
    check: dict[str, ShapeCheck] = {}
    docs = tar_jsons(out)
    for split, samples in docs.items():
        for key, members in samples.items():
            for ext, doc in members.items():
                t = template if ext == "json" else member_template(ext)
                assert conform(doc, t) == doc, f"{split}:{key}.{ext} lacks or mistypes a declared key"
                assert set(doc) == set(t), f"{split}:{key}.{ext}: undeclared {set(doc) - set(t)}"
                check.setdefault(ext, ShapeCheck()).add(doc, f"{split}:{key}")
    assert all(c.problems() == [] for c in check.values()), [c.problems() for c in check.values()]


def test_the_splits_differ_in_what_the_stages_found(split_build):
    out, recipe = split_build
    assert validate(out) == []
    docs = {split: list(samples.values()) for split, samples in tar_jsons(out).items()}
    (test,) = [m["json"] for m in docs["test"]]
    assert test["text_regions"] == [] and test["cleanup"]["removed"] == 0 and test["image"]["reencoded"] == ""
    assert test["cleanup"]["products_inpainted"] == [] and test["products"] and not test["products"][0]["inpainted"]
    train = [m["json"] for m in docs["train"]]
    assert len(train) == 3 and all(t["image"]["reencoded"] for t in train)
    assert any(r["action"] == "removed" for t in train for r in t["text_regions"])
    assert any(q["inpainted"] and q["inpainted_fraction"] > 0.1 for t in train for q in t["products"])
    assert any(t["cleanup"]["products_inpainted"] for t in train)
    assert_one_schema(out, recipe)


def _typed(features) -> None:
    """No column, struct field or list element of the card's features is left untyped (null)."""
    text = repr(features)
    assert "Value('null')" not in text and "dtype='null'" not in text, text


def test_load_dataset_out_gives_both_splits_typed_in_either_order_and_streaming(split_build, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out, recipe = split_build
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "shards/train-*.tar" in card and "shards/test-*.tar" in card
    assert "interop-splits" in card and "cleanup" in card and "FILL IN" in card
    expected = kept_ids(out)
    from hoiforge.datasets.schema import build_template
    from hoiforge.pipeline.runner import instantiate

    template = build_template(instantiate(recipe))

    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert set(ds) == {"train", "test"}  # not index.train.json / index.test.json
    for split, ids in expected.items():
        assert set(ds[split]["__key__"]) == ids
        features = ds[split].features
        assert set(features["json"]) == set(template) and isinstance(features["jpg"], datasets.Image)
        _typed(features)
        for row in ds[split]:
            assert row["jpg"].mode == "RGB"  # the grey PNG source too
            assert row["mask.png"].mode == "L" and row["mask.png"].size == row["jpg"].size
            assert set(row["json"]) == set(template) and row["json"]["id"] == row["__key__"]
    assert ds["test"][0]["json"]["text_regions"] == [] and ds["train"].features["json"]["text_regions"]

    # Either split order: each split alone (the test one first), and the card listing test first.
    for split in ("test", "train"):
        alone = datasets.load_dataset(str(out), split=split, cache_dir=str(tmp_path / f"hf-{split}"))
        assert set(alone["__key__"]) == expected[split] and alone.features == ds[split].features
    flipped = tmp_path / "flipped"
    shutil.copytree(out / "shards", flipped / "shards")
    train_entry = "  - split: train\n    path: shards/train-*.tar\n"
    test_entry = "  - split: test\n    path: shards/test-*.tar\n"
    assert train_entry + test_entry in card
    (flipped / "README.md").write_text(card.replace(train_entry + test_entry, test_entry + train_entry))
    reordered = datasets.load_dataset(str(flipped), cache_dir=str(tmp_path / "hf-flipped"))
    assert list(reordered) == ["test", "train"] and all(reordered[s].features == ds[s].features for s in reordered)

    streamed = datasets.load_dataset(str(out), streaming=True)
    for split in ("test", "train"):
        rows = list(streamed[split])
        assert {r["__key__"] for r in rows} == expected[split]
        assert all(set(r["json"]) == set(template) and r["jpg"].mode == "RGB" for r in rows)
        assert all(set(r["json"]["cleanup"]) == set(template["cleanup"]) for r in rows)


def test_ray_data_rows_and_numpy_batches_stack(split_build, ray_local):
    import numpy as np
    import ray

    out, _ = split_build
    urls = shard_files(out, "train") + shard_files(out, "test")
    rows = ray.data.read_webdataset(urls).take_all()
    assert len(rows) == 4 and all(np.asarray(r["jpg"]).shape[2] == 3 for r in rows)
    batches = list(ray.data.read_webdataset(urls).iter_batches(batch_size=4, batch_format="numpy"))
    assert sum(len(b["__key__"]) for b in batches) == 4
    assert all(np.asarray(img).shape[-1] == 3 for b in batches for img in b["jpg"])


def test_validate_fails_a_build_whose_json_schemas_differ(tmp_path):
    """Written without the build's template (as before one schema), the samples' jsons differ:
    one has products and a re-encoded image, the others neither."""
    from itertools import count

    import pyarrow as pa

    from hoiforge.datasets.layout import OutLayout
    from hoiforge.pipeline.inputs import list_inputs, refs_to_table
    from hoiforge.pipeline.manifest import finalize
    from hoiforge.pipeline.recipe import OutputSpec
    from hoiforge.pipeline.writer import write_part
    from hoiforge.stages.testing import decoded

    from .conftest import DATA, FIXTURES

    layout = OutLayout(tmp_path / "out")
    layout.make()
    samples = [decoded(DATA / n, index=i) for i, n in enumerate(FIXTURES)]
    samples[0].ann["products"] = [{"label": "cup"}]
    samples[0].ann["image"]["reencoded"] = "cleanup"
    seq = count()
    write_part(layout, OutputSpec(), samples, lambda split: next(seq))
    listing = refs_to_table(list_inputs([str(DATA / n) for n in FIXTURES]))
    finalize(layout, listing.append_column("index", pa.array(range(4), pa.int64())), {})
    problems = validate(layout.root)
    assert problems and problems[0].startswith("json schemas differ across the build")
    assert any("json image.reencoded: types differ: null in" in p and "string in" in p for p in problems), problems
    assert any("json (document) of" in p and "lacks ['products']" in p for p in problems), problems

    from typer.testing import CliRunner

    from hoiforge.cli import app

    result = CliRunner().invoke(app, ["validate", str(layout.root)])
    assert result.exit_code == 1 and "json schemas differ across the build" in result.output and "Traceback" not in result.output


def test_the_docs_loader_snippets_run_on_a_build(split_build, tmp_path, monkeypatch):
    """README's load_dataset(OUT) snippet and docs/shards.md's loaders, as a reader copies them."""
    datasets = pytest.importorskip("datasets")
    from .snippets import run

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    out, _ = split_build
    expected = kept_ids(out)
    hf = run("readme-hf", out)
    assert {split: set(hf["ds"][split]["__key__"]) for split in hf["ds"]} == expected
    assert hf["row"]["jpg"].mode == "RGB" and hf["row"]["mask.png"].mode == "L" and "text_regions" in hf["row"]["json"]
    loaders = run("docs-shards-loaders", out)
    assert set(loaders["ds"]["test"]["__key__"]) == expected["test"]
    assert sorted(s["__key__"] for s in loaders["stream"]) == sorted(expected["train"])
    assert len(loaders["random_access"]) == len(expected["train"]) and ".mask.png" in loaders["random_access"][0]
    assert sorted(r["__key__"] for r in loaders["rows"]) == sorted(expected["train"])
    assert all(r["jpg"].shape[2] == 3 for r in loaders["rows"])
