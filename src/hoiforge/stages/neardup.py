"""neardup: near-duplicates (re-encoded, resized, slightly cropped copies) of a kept sample are dropped.

Exact duplicates collapse by id (sha256 of the bytes); copies that differ by a re-encode, a resize
or a small crop do not, and since the split is a function of the id they would leak between train
and test. This stage works on 64-bit perceptual hashes (pHash, datasets/neardup.py) that the
decode stage computes from the pixels it already decoded, so it costs next to nothing per image.

Where the decision is made (docs/neardup.md):

- **In the stream**, against samples kept by earlier runs of the same output (their hashes are the
  ``m.phash`` column of the finalized manifest): a new image near one of them is dropped here,
  before any model stage spends time on it. Earlier runs' kept samples always have lower input
  indices than new inputs, so this agrees with the rule below.
- **At finalize**, over every committed hash (this stage's ``settle`` hook, which finalize calls
  with the committed manifest): in input-index order a sample is kept unless a kept sample with a
  lower index lies within ``max_distance``; the others become ``dropped`` and leave their shards,
  as exact duplicates do. Blocks, write tasks and resumed runs all end in the same decision,
  because it is a function of the committed parts alone.

Drops carry reason code ``neardup.near_duplicate`` with ``keep_id`` (the kept sample's id) and
``distance`` (Hamming bits of 64).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from hoiforge.datasets.neardup import HashIndex, from_hex, greedy_keep, phash_bytes, to_hex
from hoiforge.stages.base import Sample, Stage, StageParams

if TYPE_CHECKING:
    import pyarrow as pa

    from hoiforge.datasets.layout import OutLayout


HASH_COLUMN = "m.phash"  # the manifest column of sample.metrics["phash"]


class NeardupParams(StageParams):
    max_distance: int = Field(8, ge=0, le=32, description="Hamming distance (bits of 64) at or below which two images are near-duplicates")
    bands: int = Field(4, ge=1, le=64, description="LSH bands the 64 bits are split into; pairs closer than `bands` bits are always found")
    tables: int = Field(4, ge=1, le=16, description="LSH tables (bit permutations); more find more of the farther pairs, at linear cost")
    early: bool = Field(True, description="drop, in the stream, near-duplicates of samples kept by earlier runs of this output")


# One prior index per worker process and manifest version: tasks of one run share it.
_INDEX_CACHE: dict[tuple[str, int, int, int], tuple[HashIndex, np.ndarray] | None] = {}
_INDEX_LOCK = threading.Lock()


def load_prior_index(manifest: Path, bands: int) -> tuple[HashIndex, np.ndarray] | None:
    """The kept samples' hashes of a finalized manifest, indexed; None without one.

    One table only, whatever the recipe says: per worker process the index then holds ~50 bytes
    per kept sample (3M: ~150 MB). Pairs only the other tables find are dropped at finalize, so
    the stream's drops stay a subset of finalize's and the two never disagree.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        st = manifest.stat()
    except FileNotFoundError:
        return None
    key = (str(manifest), st.st_mtime_ns, st.st_size, bands)
    with _INDEX_LOCK:
        if key in _INDEX_CACHE:
            return _INDEX_CACHE[key]
        schema = pq.read_schema(manifest)
        index = None
        if HASH_COLUMN in schema.names:
            t = pq.read_table(manifest, columns=["index", "id", "status", HASH_COLUMN])
            t = t.filter(pc.and_(pc.equal(t.column("status"), "kept"), pc.is_valid(t.column(HASH_COLUMN))))
            hashes = from_hex(t.column(HASH_COLUMN).to_pylist())
            ids = np.array(t.column("id").to_pylist(), dtype="S")  # fixed-width bytes: no 3M Python strings
            index = (HashIndex(hashes, t.column("index").to_numpy(), bands, 1), ids)
        _INDEX_CACHE.clear()  # an older manifest's index is stale
        _INDEX_CACHE[key] = index
        return index


class Neardup(Stage):
    name = "neardup"
    Params = NeardupParams
    reads = ("image",)
    default_batch_size = 256

    def __init__(self, params: StageParams):
        super().__init__(params)
        self.out: str | None = None  # set by the runner: where earlier runs' manifest lives

    def bind_output(self, root: str | Path) -> None:
        self.out = str(root)

    def settle(self, manifest: pa.Table, layout: OutLayout) -> tuple[pa.Table, dict[str, set[str]]]:
        return settle_near_duplicates(manifest, self.params, layout)

    def process(self, samples: list[Sample]) -> None:
        hashes = []
        for s in samples:
            h = s.ann.get("image", {}).get("phash")
            if not h:  # decoded by an older hoiforge or a tool: hash the bytes (JPEG at 1/8 scale)
                h = to_hex(phash_bytes(s.image))
                s.ann.setdefault("image", {})["phash"] = h
            s.metrics["phash"] = h
            hashes.append(h)
        if self.params.early and self.out:
            self._drop_near_prior(samples, from_hex(hashes))

    def _drop_near_prior(self, samples: list[Sample], hashes: np.ndarray) -> None:
        prior = load_prior_index(Path(self.out) / "manifest.parquet", self.params.bands)
        if prior is None or not len(prior[0]):
            return
        index, ids = prior
        pos, dist = index.nearest(hashes, self.params.max_distance)
        for s, p, d in zip(samples, pos.tolist(), dist.tolist()):
            keep_id = ids[p].decode() if p >= 0 else None
            if keep_id is not None and keep_id != s.ann.get("id"):  # the same id is an exact duplicate: dedup's call
                drop_near(s, keep_id, d)


def reason_text(keep_id: str, distance: int) -> str:
    return f"near-duplicate of {keep_id} (pHash distance {distance}/64)"


def drop_near(s: Sample, keep_id: str, distance: int) -> None:
    """The one way a near-duplicate is dropped, in the stream and (as columns) at finalize."""
    params: dict[str, Any] = {"keep_id": keep_id, "distance": int(distance)}
    s.drop("neardup", "near_duplicate", reason_text(keep_id, distance), **params)


# -- the finalize pass ----------------------------------------------------------------------
def _keys_in(path: Path) -> set[str]:
    """The sample keys a tar holds, from its headers only (tarfile seeks over the data)."""
    if not path.exists():
        return set()
    import tarfile

    with tarfile.open(path, "r:") as tar:
        return {m.name.partition(".")[0] for m in tar}


def settle_near_duplicates(table: pa.Table, params: NeardupParams, layout: OutLayout | None = None) -> tuple[pa.Table, dict[str, set[str]]]:
    """Mark near-duplicates of kept rows as dropped; returns the table and, per shard, the ids to remove.

    The parts keep saying ``kept`` for a sample an earlier finalize already removed from its
    shard, so with ``layout`` each shard's headers are checked and only ids still in it are
    returned (an empty set: the shard is only re-described, not rewritten on every resume).
    """
    remove: dict[str, set[str]] = defaultdict(set)
    if HASH_COLUMN not in table.column_names:
        return table, remove
    import pyarrow as pa
    import pyarrow.compute as pc

    status = table.column("status")
    hashed = pc.and_(pc.equal(status, "kept"), pc.is_valid(table.column(HASH_COLUMN)))
    rows = np.flatnonzero(hashed.to_numpy(zero_copy_only=False))
    if len(rows) < 2:
        return table, remove
    cand = table.take(pa.array(rows)).select(["index", "id", "shard", HASH_COLUMN])
    decision = greedy_keep(
        from_hex(cand.column(HASH_COLUMN).to_pylist()),
        cand.column("index").to_numpy(),
        params.max_distance,
        params.bands,
        params.tables,
    )
    lost = np.flatnonzero(~decision.kept)
    if not len(lost):
        return table, remove
    ids = cand.column("id").to_pylist()
    shards = cand.column("shard").to_pylist()
    n = table.num_rows
    reasons = np.full(n, None, dtype=object)
    codes = np.full(n, None, dtype=object)
    rparams = np.full(n, None, dtype=object)
    mask = np.zeros(n, dtype=bool)
    for k in lost.tolist():
        keep_id, distance = ids[decision.keep[k]], int(decision.distance[k])
        row = rows[k]
        mask[row] = True
        reasons[row] = reason_text(keep_id, distance)
        codes[row] = "neardup.near_duplicate"
        rparams[row] = json.dumps({"distance": distance, "keep_id": keep_id}, separators=(",", ":"), sort_keys=True)
        remove[shards[k]].add(ids[k])
    if layout is not None:
        for url, gone in remove.items():
            gone &= _keys_in(layout.root / url)
    m = pa.array(mask)
    for name, value in (("status", "dropped"), ("stage", "neardup"), ("shard", None), ("split", None)):
        column = table.column(name)
        table = table.set_column(table.schema.get_field_index(name), name, pc.if_else(m, pa.scalar(value, column.type), column))
    for name, values in (("reason", reasons), ("reason_code", codes), ("reason_params", rparams)):
        column = table.column(name)
        table = table.set_column(table.schema.get_field_index(name), name, pc.if_else(m, pa.array(values, column.type), column))
    return table, remove
