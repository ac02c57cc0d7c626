"""Reading samples back from an output directory (inspect, viewer, tests)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from hoiforge.datasets.layout import OutLayout


def find_row(out: str | Path, ident: str) -> dict[str, Any] | None:
    """The manifest row of a sample id (or id prefix, or input key/uri)."""
    table = pq.read_table(OutLayout(out).manifest)
    for column in ("id", "key", "uri"):
        hit = table.filter(pc.equal(table.column(column), ident))
        if hit.num_rows:
            return hit.slice(0, 1).to_pylist()[0]
    if len(ident) >= 6:
        hit = table.filter(pc.starts_with(pc.fill_null(table.column("id"), ""), ident))
        if hit.num_rows == 1:
            return hit.to_pylist()[0]
    return None


def read_sample(out: str | Path, shard_url: str, sample_id: str) -> dict[str, bytes]:
    """All members of one sample, by extension."""
    members: dict[str, bytes] = {}
    with tarfile.open(Path(out) / shard_url, "r:") as tar:
        for info in tar:
            key, _, ext = info.name.partition(".")
            if key == sample_id:
                members[ext] = tar.extractfile(info).read()
            elif members:
                break  # a sample's members are contiguous
    return members


def annotation(out: str | Path, row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(read_sample(out, row["shard"], row["id"])["json"])
