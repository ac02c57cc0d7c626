"""The finalize pass of the neardup stage: one decision over every committed hash.

A Ray block, a write task or a resumed run each see part of the input; the near-duplicate
decision needs all of it. So the neardup stage only records each image's pHash (the manifest
column ``m.phash``), and finalize, which already reads every committed part, decides here:
in input-index order a kept sample stays unless a kept sample with a lower index lies within
``max_distance`` (datasets/neardup.py ``greedy_keep``); the others become ``dropped`` with reason
code ``neardup.near_duplicate`` and leave their shards, as exact duplicates do. A function of the
committed parts alone, so a killed and resumed run ends with the same decisions.
"""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.neardup import from_hex, greedy_keep

HASH_COLUMN = "m.phash"


def neardup_params(layout: OutLayout) -> dict[str, Any] | None:
    """The neardup stage's settings from the build's recipe.json; None if the recipe has none."""
    if not layout.recipe.exists():
        return None
    from hoiforge.stages.neardup import NeardupParams

    for entry in json.loads(layout.recipe.read_text()).get("stages", []):
        if entry.get("stage") == "neardup":
            p = NeardupParams.model_validate(entry)
            return {"max_distance": p.max_distance, "bands": p.bands, "tables": p.tables}
    return None


def _keys_in(path: Path) -> set[str]:
    """The sample keys a tar holds, from its headers only (tarfile seeks over the data)."""
    if not path.exists():
        return set()
    with tarfile.open(path, "r:") as tar:
        return {m.name.partition(".")[0] for m in tar}


def settle_near_duplicates(
    table: pa.Table, params: dict[str, Any] | None, layout: OutLayout | None = None
) -> tuple[pa.Table, dict[str, set[str]]]:
    """Mark near-duplicates of kept rows as dropped; returns the table and, per shard, the ids to remove.

    The parts keep saying ``kept`` for a sample an earlier finalize already removed from its
    shard, so with ``layout`` each shard's headers are checked and only ids still in it are
    returned (an empty set: the shard is only re-described, not rewritten on every resume).
    """
    remove: dict[str, set[str]] = defaultdict(set)
    if params is None or HASH_COLUMN not in table.column_names:
        return table, remove
    from hoiforge.stages.neardup import reason_text

    status = table.column("status")
    hashed = pc.and_(pc.equal(status, "kept"), pc.is_valid(table.column(HASH_COLUMN)))
    rows = np.flatnonzero(hashed.to_numpy(zero_copy_only=False))
    if len(rows) < 2:
        return table, remove
    cand = table.take(pa.array(rows)).select(["index", "id", "shard", HASH_COLUMN])
    decision = greedy_keep(
        from_hex(cand.column(HASH_COLUMN).to_pylist()),
        cand.column("index").to_numpy(),
        params["max_distance"],
        params["bands"],
        params["tables"],
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
