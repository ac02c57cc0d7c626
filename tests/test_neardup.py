"""Near-duplicates: pHash, LSH by bands against brute force, the keep rule, and the finalize pass
over blocks and resumed runs (no Ray here: the write path is called as a write task calls it).
The Ray build through the bundled-recipe layout is tests/test_neardup_build.py (slow)."""

from __future__ import annotations

import io
import json
import tarfile
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.datasets.contract import split_of
from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.neardup import brute_force_pairs, from_hex, greedy_keep, hamming, near_pairs, phash_bytes, recall
from hoiforge.datasets.validate import validate
from hoiforge.pipeline.adapter import run_stage
from hoiforge.pipeline.manifest import finalize
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import bind_output, instantiate, prepare_output
from hoiforge.pipeline.writer import write_part
from hoiforge.stages.base import Stage
from hoiforge.stages.testing import sample_from_file

DATA = Path(__file__).parent / "data"
PHOTOS = ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg")


def _jpeg(img: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def variants(name: str) -> dict[str, bytes]:
    """The copies scraped sets are full of: a JPEG q=60 re-encode, a 0.5x resize, a ~5% crop (of the area)."""
    img = Image.open(DATA / name).convert("RGB")
    w, h = img.size
    mx, my = round(0.0125 * w), round(0.0125 * h)
    return {
        "q60": _jpeg(img, 60),
        "half": _png(img.resize((w // 2, h // 2), Image.LANCZOS)),
        "crop": _png(img.crop((mx, my, w - mx, h - my))),  # 1.25% off each side: ~5% of the pixels gone
    }


def planted(n_base: int, seed: int) -> np.ndarray:
    """Random hashes, each with 0-3 copies at 0-11 flipped bits, shuffled."""
    rng = np.random.default_rng(seed)
    hashes = []
    for base in rng.integers(0, 2**64 - 1, n_base, dtype=np.uint64, endpoint=True):
        hashes.append(base)
        for _ in range(int(rng.integers(0, 4))):
            flips = rng.choice(64, int(rng.integers(0, 12)), replace=False)
            hashes.append(base ^ np.uint64(sum(1 << int(f) for f in flips)))
    out = np.array(hashes, dtype=np.uint64)
    rng.shuffle(out)
    return out


# -- hashing ---------------------------------------------------------------------------------


def test_variants_are_near_and_distinct_photos_are_far():
    from hoiforge.datasets.images import normalise

    own = {name: int(normalise((DATA / name).read_bytes(), 10**8).phash, 16) for name in PHOTOS}
    for name in PHOTOS:
        for kind, data in variants(name).items():
            d = bin(own[name] ^ int(normalise(data, 10**8).phash, 16)).count("1")
            assert d <= 8, (name, kind, d)
    for a, b in combinations(PHOTOS, 2):
        assert bin(own[a] ^ own[b]).count("1") > 20, (a, b)


def test_phash_from_bytes_agrees_with_the_decode_hash():
    """The stage's fallback for samples decoded without a hash (JPEG decoded at 1/8 scale) lands near."""
    from hoiforge.datasets.images import normalise

    for name in PHOTOS:
        data = (DATA / name).read_bytes()
        d = bin(phash_bytes(data) ^ int(normalise(data, 10**8).phash, 16)).count("1")
        assert d <= 4, (name, d)


# -- LSH and the keep rule -------------------------------------------------------------------


def test_lsh_finds_the_brute_force_pairs():
    hashes = planted(300, seed=1)
    truth = brute_force_pairs(hashes, 10)
    assert len(truth) > 100
    # bands > max_distance: every pair shares a band (pigeonhole), so LSH is exact.
    i, j, d = near_pairs(hashes, 10, bands=11, tables=1)
    assert set(zip(i.tolist(), j.tolist())) == truth
    assert np.array_equal(d, hamming(hashes[i], hashes[j]))
    # Fewer bands: never a false pair, every pair within bands-1 bits, more of the rest with tables.
    found = {}
    for tables in (1, 4):
        i, j, d = near_pairs(hashes, 10, bands=4, tables=tables)
        found[tables] = set(zip(i.tolist(), j.tolist()))
        assert found[tables] <= truth
        close = {(a, b) for a, b in truth if int(hamming(hashes[a], hashes[b])) <= 3}
        assert close <= found[tables]
    assert len(found[4]) > len(found[1])
    assert recall(3, 4) == 1.0 and 0.3 < recall(8, 4) < recall(8, 4, 4) < 1


def test_greedy_keep_is_the_reference_rule():
    hashes = planted(150, seed=2)
    order = np.random.default_rng(3).permutation(len(hashes))
    decision = greedy_keep(hashes, order, 10, bands=11)
    kept: list[int] = []
    for p in np.argsort(order):
        near = [(int(hamming(hashes[p], hashes[k])), order[k], k) for k in kept if hamming(hashes[p], hashes[k]) <= 10]
        if near:
            dist, _, k = min(near)
            assert not decision.kept[p] and decision.keep[p] == k and decision.distance[p] == dist
        else:
            kept.append(p)
            assert decision.kept[p]
    # No two kept hashes are near-duplicates.
    assert not any(int(hamming(hashes[a], hashes[b])) <= 10 for a, b in combinations(np.flatnonzero(decision.kept), 2))


def test_identical_hashes_collapse_to_the_earliest():
    hashes = np.array([5, 5, 7, 5, 2**40], dtype=np.uint64)
    decision = greedy_keep(hashes, np.array([3, 1, 0, 2, 4]), 2)
    # index 0 (hash 7) keeps; the 5s are 1 bit away, so all three drop for it; 2**40 is far.
    assert decision.kept.tolist() == [False, False, True, False, True]
    assert decision.keep.tolist() == [2, 2, -1, 2, -1] and decision.distance.tolist() == [1, 1, -1, 1, -1]


# -- the finalize pass over blocks and resumed runs ------------------------------------------

RECIPE = {
    "name": "nd",
    "output": {"shard_max_count": 3, "test_size": 0.5},
    "stages": [{"stage": "decode"}, {"stage": "neardup", "max_distance": 8, "bands": 9, "tables": 1}],
}


def _run(out: Path, files: list[Path], start: int, block: int = 3, later_drops: tuple[str, ...] = ()) -> dict:
    """One build run without Ray: decode + neardup per block, each block written as a write task
    writes it, then finalize (what runner.build does, minus the Ray plan). ``later_drops``: file
    names a later filter stage drops."""
    layout = OutLayout(out)
    recipe = parse_recipe(RECIPE)
    prepare_output(layout, recipe)
    stages = instantiate(recipe)
    bind_output(stages, layout)
    seq: dict[str, int] = {}

    def take(split: str) -> int:
        seq[split] = seq.get(split, start) + 1
        return seq[split]

    samples = [sample_from_file(f, index=start + i) for i, f in enumerate(files)]
    for lo in range(0, len(samples), block):
        batch = samples[lo : lo + block]
        for stage in stages:
            batch = run_stage(stage, batch)
        for sample in batch:
            if Path(sample.key).name in later_drops and sample.live:
                sample.drop("person", "count", "0 persons", persons=0)
        write_part(layout, recipe.output, batch, take)
    listing = pa.table({"key": [str(f) for f in files]})
    return finalize(layout, listing, {})


def _check_consistent(out: Path) -> list[dict]:
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    in_tars = set()
    for tar_path in (out / "shards").glob("*.tar"):
        with tarfile.open(tar_path) as tar:
            in_tars |= {m.name.partition(".")[0] for m in tar}
    kept = [r for r in rows if r["status"] == "kept"]
    assert in_tars == {r["id"] for r in kept}
    assert validate(out, check_images=False) == []
    # No kept pair is within the threshold, so no near-duplicate pair straddles train and test.
    hashes = from_hex([r["m.phash"] for r in kept])
    assert not [(a, b) for a, b in combinations(range(len(kept)), 2) if int(hamming(hashes[a], hashes[b])) <= 8]
    return rows


def test_near_duplicates_across_blocks_and_resumed_runs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    originals = []
    for name in PHOTOS:
        (src / name).write_bytes((DATA / name).read_bytes())
        originals.append(src / name)
    copies = {}
    for name in PHOTOS:
        for kind, data in variants(name).items():
            path = src / f"{Path(name).stem}.{kind}.{'jpg' if kind == 'q60' else 'png'}"
            path.write_bytes(data)
            copies[path] = name
    q60 = [p for p in copies if ".q60." in p.name]
    later = [p for p in copies if ".q60." not in p.name]
    out = tmp_path / "out"

    # Run 1: the originals and their q60 copies, interleaved across blocks: decided at finalize.
    _run(out, [f for pair in zip(originals, q60) for f in pair], start=0)
    rows = _check_consistent(out)
    by_key = {Path(r["key"]).name: r for r in rows}
    ids = {name: by_key[name]["id"] for name in PHOTOS}
    assert all(by_key[name]["status"] == "kept" for name in PHOTOS)
    for p in q60:
        r = by_key[p.name]
        assert r["status"] == "dropped" and r["reason_code"] == "neardup.near_duplicate" and r["stage"] == "neardup"
        assert json.loads(r["reason_params"])["keep_id"] == ids[copies[p]] and r["shard"] is None
        assert ids[copies[p]] in r["reason"]

    # Run 2 (resumed output, new inputs): resized and cropped copies meet run 1's kept samples in
    # the stream (before any later stage) and are dropped there.
    stats = _run(out, later, start=len(originals) + len(q60))
    parts = pa.concat_tables(
        [pq.read_table(p).replace_schema_metadata(None) for p in OutLayout(out).parts.glob("*.parquet")], promote_options="permissive"
    )
    in_stream = {Path(k).name for k, s in zip(parts.column("key").to_pylist(), parts.column("status").to_pylist()) if s == "dropped"}
    assert in_stream == {p.name for p in later}  # run 1's q60 copies were committed kept, then settled at finalize
    rows = _check_consistent(out)
    assert len(rows) == len(PHOTOS) + len(copies) and stats["kept"] == len(PHOTOS)
    assert stats["by_code"]["neardup.near_duplicate"]["count"] == len(copies)
    by_key = {Path(r["key"]).name: r for r in rows}
    for p in later:
        r = by_key[p.name]
        params = json.loads(r["reason_params"])
        assert r["status"] == "dropped" and params["keep_id"] == ids[copies[p]] and params["distance"] <= 8
    # Both splits hold a kept photo, and every copy's keeper is kept, in the split of its id.
    kept = {r["id"]: r for r in rows if r["status"] == "kept"}
    assert {r["split"] for r in kept.values()} == {"train", "test"}
    for r in rows:
        if r["status"] == "dropped":
            keeper = kept[json.loads(r["reason_params"])["keep_id"]]
            assert keeper["split"] == split_of(keeper["id"], 0.5)

    # Finalize again (a rerun with nothing to do): the same accounting, and no shard rewritten.
    before = pq.read_table(out / "manifest.parquet")
    tars = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.tar")}
    finalize(OutLayout(out), pa.table({"key": before.column("key")}), {})
    assert pq.read_table(out / "manifest.parquet").equals(before)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.tar")} == tars


def test_early_drop_agrees_with_finalize(tmp_path):
    """The same inputs dropped in the stream (against a finalized earlier run) or at finalize
    (all in one run, in blocks of any size) end with the same statuses and reasons."""
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for name in PHOTOS[:2]:
        (src / name).write_bytes((DATA / name).read_bytes())
        files.append(src / name)
    for name in PHOTOS[:2]:
        for kind, data in variants(name).items():
            files.append(src / f"{Path(name).stem}.{kind}.bin")
            files[-1].write_bytes(data)
    _run(tmp_path / "two", files[:2], start=0)
    _run(tmp_path / "two", files[2:], start=2)
    _run(tmp_path / "one", files, start=0)
    _run(tmp_path / "blocks", files, start=0, block=1)
    status = {}
    for name in ("two", "one", "blocks"):
        rows = pq.read_table(tmp_path / name / "manifest.parquet").to_pylist()
        status[name] = sorted((Path(r["key"]).name, r["status"], r["reason_code"], r["reason_params"]) for r in rows)
    assert status["two"] == status["one"] == status["blocks"]
    assert sum(s[1] == "dropped" for s in status["one"]) == 6


def test_recipe_without_neardup_keeps_everything(tmp_path):
    from hoiforge.pipeline.recipe import built_stages

    layout = OutLayout(tmp_path / "out")
    prepare_output(layout, parse_recipe({"name": "x", "stages": [{"stage": "decode"}]}))
    stages = built_stages(layout.recipe)
    assert [s.name for s in stages] == ["decode"] and type(stages[0]).settle is Stage.settle  # no finalize hook to run


@pytest.mark.parametrize("bad", [{"max_distance": 40}, {"bands": 0}, {"band": 4}])
def test_recipe_typos_fail_early(bad):
    from hoiforge.errors import RecipeError

    with pytest.raises(RecipeError, match="neardup"):
        parse_recipe({"name": "x", "stages": [{"stage": "decode"}, {"stage": "neardup", **bad}]})


def test_bundled_recipes_hash_before_the_model_stages():
    from hoiforge.pipeline.recipe import load_recipe

    for name in ("hoihuman", "hoihuman-paper", "shoeleg", "shoeleg-paper"):
        names = load_recipe(name).stage_names()
        assert names.index("decode") < names.index("neardup") < names.index("person"), name


def test_a_copy_stands_in_when_a_later_stage_drops_the_original(tmp_path):
    """The rule applies to what the other stages kept: the earliest surviving copy is the keeper."""
    src = tmp_path / "src"
    src.mkdir()
    files = [src / "astronaut.png"]
    files[0].write_bytes((DATA / "astronaut.png").read_bytes())
    for kind, data in variants("astronaut.png").items():
        files.append(src / f"astronaut_{kind}.bin")
        files[-1].write_bytes(data)
    _run(tmp_path / "out", files, start=0, later_drops=("astronaut.png",))
    rows = {Path(r["key"]).name: r for r in _check_consistent(tmp_path / "out")}
    assert rows["astronaut.png"]["reason_code"] == "person.count"
    assert rows["astronaut_q60.bin"]["status"] == "kept"
    for kind in ("half", "crop"):
        r = rows[f"astronaut_{kind}.bin"]
        assert r["reason_code"] == "neardup.near_duplicate" and json.loads(r["reason_params"])["keep_id"] == rows["astronaut_q60.bin"]["id"]


@pytest.mark.parametrize("image_format", ["source", "jpg", "png", "webp"])
def test_decode_hashes_the_image_in_every_output_format(image_format):
    """The hash is taken at decode whatever the stored format, so the stage never decodes again;
    formats that store the same pixels give the same hash."""
    from hoiforge.datasets.images import normalise

    for name in PHOTOS:
        data = (DATA / name).read_bytes()
        h = normalise(data, 10**8, image_format=image_format).phash
        assert h is not None and len(h) == 16
        d = bin(int(h, 16) ^ int(normalise(data, 10**8).phash, 16)).count("1")
        assert d <= 4, (name, image_format, d)
