"""Shard compaction at finalize, without Ray: partial write-task shards merged into full ones,
members byte for byte, manifest and wids indexes consistent, and a kill at any point of it undone
by the next finalize to the same shards."""

from __future__ import annotations

import json
import shutil
import tarfile
from itertools import count
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.validate import validate
from hoiforge.pipeline import compact
from hoiforge.pipeline.inputs import list_inputs, refs_to_table
from hoiforge.pipeline.manifest import clean_uncommitted, finalize, next_shard_seq
from hoiforge.pipeline.recipe import OutputSpec
from hoiforge.pipeline.writer import write_part
from hoiforge.stages.testing import decoded

SPEC = OutputSpec(shard_max_count=5, test_size=0.25)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(41):
        p = d / f"img-{i:03d}.{('png', 'jpg', 'webp')[i % 3]}"
        Image.fromarray(rng.integers(0, 255, (48 + i % 5, 64, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def listing(paths: list[Path]) -> pa.Table:
    table = refs_to_table(list_inputs([str(p) for p in paths]))
    return table.append_column("index", pa.array(range(table.num_rows), pa.int64()))


def write_batches(layout: OutLayout, paths: list[Path], batch: int = 7, start: int = 0, spec: OutputSpec = SPEC, drop: bool = True) -> None:
    """What Ray's write tasks do: each gets ``batch`` rows (every other one dropped), writes its shards."""
    seqs = next_shard_seq(layout)
    counters = {split: count(seqs.get(split, 0)) for split in ("train", "test")}
    for lo in range(0, len(paths), batch):
        samples = [decoded(p, index=start + lo + i) for i, p in enumerate(paths[lo : lo + batch])]
        for s in samples:
            if drop and s.index % 2:
                s.drop("resolution", "too_small", "too small")
        write_part(layout, spec, samples, lambda split: next(counters[split]))


def shards_of(layout: OutLayout) -> dict[str, dict[str, bytes]]:
    """{shard name: {member name: bytes}}."""
    out = {}
    for p in sorted(layout.shards.glob("*.tar")):
        with tarfile.open(p) as tar:
            out[p.name] = {m.name: tar.extractfile(m).read() for m in tar}
    return out


def members(layout: OutLayout) -> dict[str, bytes]:
    return {name: data for shard in shards_of(layout).values() for name, data in shard.items()}


def check_layout(layout: OutLayout) -> None:
    index = json.loads(layout.index.read_text())["shardlist"]
    for split in ("train", "test"):
        sizes = [s["nsamples"] for s in index if Path(s["url"]).name.startswith(split)]
        assert sum(n < 0.9 * SPEC.shard_max_count for n in sizes) <= 1, (split, sizes)
        per_split = json.loads(layout.index_for(split).read_text())["shardlist"]
        assert [s["url"] for s in per_split] == [s["url"] for s in index if Path(s["url"]).name.startswith(split)]
    rows = pq.read_table(layout.manifest).to_pylist()
    for r in rows:
        if r["status"] == "kept":
            with tarfile.open(layout.root / r["shard"]) as tar:
                assert f"{r['id']}.json" in tar.getnames()
    assert validate(layout.root) == []


def test_partial_shards_merge_into_full_ones_byte_for_byte(tmp_path, images):
    layout = OutLayout(tmp_path / "out")
    layout.make()
    write_batches(layout, images)
    before = members(layout)
    assert len(shards_of(layout)) >= 8  # a partial train shard per write task, and test ones
    stats = finalize(layout, listing(images), {}, SPEC)
    assert members(layout) == before  # every member moved unchanged
    assert stats["kept"] == 21 and stats["shards"] <= 21 // 5 + 2
    check_layout(layout)
    rows = [r for r in pq.read_table(layout.manifest).to_pylist() if r["status"] == "kept"]
    ann = json.loads(members(layout)[f"{rows[0]['id']}.json"])
    assert "shard" not in ann  # where a sample sits is the manifest's to say

    # Finalize again: nothing moves, no new record.
    again = shards_of(layout)
    finalize(layout, listing(images), {}, SPEC)
    assert shards_of(layout) == again and len(compact.records(layout)) == 1


def reference(tmp_path: Path, images: list[Path]) -> dict[str, dict[str, bytes]]:
    layout = OutLayout(tmp_path / "reference")
    layout.make()
    write_batches(layout, images)
    finalize(layout, listing(images), {}, SPEC)
    return shards_of(layout)


def test_kill_before_the_record_then_resume_gives_the_same_shards(tmp_path, images, monkeypatch):
    expected = reference(tmp_path, images)
    layout = OutLayout(tmp_path / "out")
    layout.make()
    write_batches(layout, images)
    real_commit = compact.commit

    def killed(tmp, final):
        if final.name.startswith("compact-"):
            raise KeyboardInterrupt("killed")
        real_commit(tmp, final)

    monkeypatch.setattr(compact, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        finalize(layout, listing(images), {}, SPEC)
    monkeypatch.setattr(compact, "commit", real_commit)
    assert not compact.records(layout)
    removed = clean_uncommitted(layout)  # what the resumed build does first
    assert any(p.name.startswith(".tmp-") for p in removed) and any(p.suffix == ".tar" for p in removed)
    finalize(layout, listing(images), {}, SPEC)
    assert shards_of(layout) == expected
    check_layout(layout)


def test_kill_after_the_record_then_resume_gives_the_same_shards(tmp_path, images, monkeypatch):
    expected = reference(tmp_path, images)
    layout = OutLayout(tmp_path / "out")
    layout.make()
    write_batches(layout, images)
    monkeypatch.setattr(compact, "delete_retired", lambda layout: None)
    finalize(layout, listing(images), {}, SPEC)
    monkeypatch.undo()
    assert len(compact.records(layout)) == 1 and len(shards_of(layout)) > len(expected)
    clean_uncommitted(layout)
    finalize(layout, listing(images), {}, SPEC)
    assert shards_of(layout) == expected
    check_layout(layout)


def test_an_incremental_run_fills_the_open_shard(tmp_path, images):
    layout = OutLayout(tmp_path / "out")
    layout.make()
    first, second = images[:20], images[20:]
    write_batches(layout, first)
    finalize(layout, listing(first), {}, SPEC)
    write_batches(layout, second, start=20)
    finalize(layout, listing(images), {}, SPEC)
    check_layout(layout)
    assert len(members(layout)) == 21 * 2  # image + json per kept sample
    # No name is ever reused: every shard a record retired stays retired.
    made, retired = compact.named_by_records(layout)
    assert not set(made) & retired


def test_a_build_without_partial_shards_is_left_alone(tmp_path, images):
    layout = OutLayout(tmp_path / "out")
    layout.make()
    write_batches(layout, images[:10], batch=10)
    finalize(layout, listing(images[:10]), {}, OutputSpec(shard_max_count=5))
    assert not compact.records(layout)


def test_copy_of_finished_output_validates(tmp_path, images):
    layout = OutLayout(tmp_path / "out")
    layout.make()
    write_batches(layout, images)
    finalize(layout, listing(images), {}, SPEC)
    copy = tmp_path / "copy"
    shutil.copytree(layout.root, copy)
    assert validate(copy) == []


def test_shards_fill_up_to_the_byte_limit(tmp_path, images):
    """Samples of ~7 kB, 150 kB shards: merged shards stop at the byte limit, >= 90% full but the last."""
    spec = OutputSpec(shard_max_count=1000, shard_max_bytes=150_000)
    layout = OutLayout(tmp_path / "out")
    layout.make()
    write_batches(layout, images, spec=spec, drop=False)
    finalize(layout, listing(images), {}, spec)
    index = json.loads(layout.index.read_text())["shardlist"]
    sizes = [s["filesize"] for s in index]
    assert sum(s["nsamples"] for s in index) == 41 and max(sizes) <= spec.shard_max_bytes
    assert sum(n < 0.9 * spec.shard_max_bytes for n in sizes) <= 1, sizes
    assert validate(layout.root) == []
