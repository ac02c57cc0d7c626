"""Shard writing and finalize without Ray: rolling by count and bytes, retried writes, duplicates."""

from __future__ import annotations

import json
import tarfile
from itertools import count
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hoiforge.datasets.layout import OutLayout
from hoiforge.pipeline.inputs import list_inputs, refs_to_table
from hoiforge.pipeline.manifest import clean_uncommitted, committed_parts, finalize
from hoiforge.pipeline.recipe import OutputSpec
from hoiforge.pipeline.writer import write_part
from hoiforge.stages.testing import decoded

from .conftest import DATA, FIXTURES


@pytest.fixture
def layout(tmp_path) -> OutLayout:
    out = OutLayout(tmp_path / "out")
    out.make()
    return out


def samples(names=FIXTURES):
    return [decoded(DATA / n, index=i) for i, n in enumerate(names)]


def listing_for(names=FIXTURES):
    table = refs_to_table(list_inputs([str(DATA / n) for n in names]))
    import pyarrow as pa

    return table.append_column("index", pa.array(range(table.num_rows), pa.int64()))


def shard_counts(layout: OutLayout) -> dict[str, int]:
    counts = {}
    for p in sorted(layout.shards.glob("*.tar")):
        with tarfile.open(p) as tar:
            counts[p.name] = len({m.name.split(".")[0] for m in tar})
    return counts


def test_shards_roll_over_by_count_and_by_bytes(layout):
    seq = count()
    write_part(layout, OutputSpec(shard_max_count=3), samples(), lambda split: next(seq))
    assert shard_counts(layout) == {"train-000000.tar": 3, "train-000001.tar": 1}

    other = OutLayout(layout.root.parent / "bytes")
    other.make()
    seq = count()
    # 600 kB a shard: astronaut (790 kB) alone, basketball (133 kB) + coffee (467 kB) would pass
    # the limit, coffee + scenetext (97 kB) fit together.
    write_part(other, OutputSpec(shard_max_bytes=600_000), samples(), lambda split: next(seq))
    assert list(shard_counts(other).values()) == [1, 1, 2]


def test_part_lists_every_row_and_its_shards(layout):
    seq = count()
    batch = samples()
    batch[2].drop("person", "count", "0 persons", persons=0)
    write_part(layout, OutputSpec(), batch, lambda split: next(seq))
    [part] = committed_parts(layout)
    rows = pq.read_table(part).to_pylist()
    assert [r["status"] for r in rows] == ["kept", "kept", "dropped", "kept"]
    assert rows[2]["reason"] == "0 persons" and rows[2]["shard"] is None
    meta = json.loads(pq.read_schema(part).metadata[b"hoiforge.shards"])
    assert meta[0]["nsamples"] == 3 and meta[0]["url"] == "shards/train-000000.tar"


def test_retried_write_and_exact_duplicates_are_settled_by_finalize(layout):
    seq = count()
    spec = OutputSpec()
    write_part(layout, spec, samples(), lambda split: next(seq))
    # A write task that Ray retried after it had committed: the same inputs, committed again.
    write_part(layout, spec, samples(), lambda split: next(seq))
    assert sum(shard_counts(layout).values()) == 8
    stats = finalize(layout, listing_for(), {})
    assert stats["inputs"] == 4 and stats["kept"] == 4
    assert sum(shard_counts(layout).values()) == 4  # the second copy was removed from its shard
    index = json.loads(layout.index.read_text())
    assert sum(s["nsamples"] for s in index["shardlist"]) == 4
    # Finalize is idempotent.
    assert finalize(layout, listing_for(), {})["kept"] == 4


def test_same_image_under_two_inputs_keeps_the_lowest_index(layout, tmp_path):
    import shutil

    copy = tmp_path / "copy_of_coffee.png"
    shutil.copy(DATA / "coffee.png", copy)
    first = decoded(DATA / "coffee.png", index=0)
    second = decoded(copy, index=1)
    seq = count()
    write_part(layout, OutputSpec(), [second], lambda split: next(seq))  # the later input commits first
    write_part(layout, OutputSpec(), [first], lambda split: next(seq))
    import pyarrow as pa

    listing = refs_to_table(list_inputs([str(DATA / "coffee.png"), str(copy)]))
    listing = listing.append_column("index", pa.array([0, 1], pa.int64()))
    finalize(layout, listing, {})
    rows = {Path(r["key"]).name: r for r in pq.read_table(layout.manifest).to_pylist()}
    assert rows["coffee.png"]["status"] == "kept"
    assert rows["copy_of_coffee.png"]["status"] == "dropped" and rows["copy_of_coffee.png"]["stage"] == "dedup"
    assert sum(shard_counts(layout).values()) == 1


def test_orphans_of_a_killed_run_are_cleaned(layout):
    seq = count()
    write_part(layout, OutputSpec(), samples(FIXTURES[:1]), lambda split: next(seq))
    (layout.shards / "train-000007.tar").write_bytes(b"half a shard")  # renamed, but its part never was
    (layout.shards / ".tmp-abc-train-000008.tar").write_bytes(b"partial")
    (layout.parts / ".tmp-abc-part-x.parquet").write_bytes(b"partial")
    removed = {p.name for p in clean_uncommitted(layout)}
    assert removed == {"train-000007.tar", ".tmp-abc-train-000008.tar", ".tmp-abc-part-x.parquet"}
    assert list(shard_counts(layout)) == ["train-000000.tar"]


def test_resume_refuses_other_stage_settings_but_not_other_resources(tmp_path):
    from hoiforge.errors import OutputError
    from hoiforge.pipeline.recipe import load_recipe
    from hoiforge.pipeline.runner import prepare_output

    layout = OutLayout(tmp_path / "out")
    recipe = load_recipe("demo")
    prepare_output(layout, recipe)
    assert json.loads(layout.recipe.read_text())["stages"][1]["min_short_side"] == 256

    faster = recipe.model_copy(deep=True)
    faster.stages[2].resources.batch_size = 64  # how it runs may change between runs
    faster.stages[2].resources.concurrency = 4
    prepare_output(layout, faster)

    stricter = recipe.model_copy(deep=True)
    stricter.stages[1].min_short_side = 512  # what it keeps may not
    with pytest.raises(OutputError, match=r"stages\[1\] \(resolution\) changed"):
        prepare_output(layout, stricter)


def test_tars_are_byte_identical_to_webdataset_tarwriter(tmp_path):
    import webdataset as wds

    from hoiforge.pipeline.writer import write_tar

    samples = [("a" * 20, {"png": b"x" * 1000, "json": b"{}", "pose.png": b"y" * 10}), ("b" * 20, {"jpg": b"z" * 5000, "json": b"{}"})]
    info = write_tar(tmp_path / "ours.tar", samples)
    with open(tmp_path / "wds.tar", "wb") as f, wds.TarWriter(f, encoder=False, mtime=0) as sink:
        for key, members in samples:
            sink.write({"__key__": key, **members})
    ours = (tmp_path / "ours.tar").read_bytes()
    assert ours == (tmp_path / "wds.tar").read_bytes()
    assert info["filesize"] == len(ours)


def test_shard_counter_is_one_per_cluster_and_keeps_builds_apart(ray_local):
    """Every driver finds the same counter by name; two builds (run ids) number their shards
    independently, each from its own start, and a finished build's numbers are forgotten."""
    from hoiforge.pipeline.writer import shard_counter

    ray = ray_local
    first, second = shard_counter(), shard_counter()
    assert first._actor_id == second._actor_id
    ray.get(first.begin.remote("build-a", {"train": 7}))
    ray.get(second.begin.remote("build-b", {}))
    assert [ray.get(first.take.remote("build-a", "train")) for _ in range(2)] == [7, 8]
    assert ray.get(second.take.remote("build-b", "train")) == 0
    assert ray.get(second.take.remote("build-a", "test")) == 0
    ray.get(first.end.remote("build-a"))
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(first.take.remote("build-a", "train"))
