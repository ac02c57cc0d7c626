"""Reading samples back from an output directory (inspect, viewer, tests)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hoiforge.datasets.layout import OutLayout

_HEX = set("0123456789abcdef")


class AmbiguousId(LookupError):
    """An id prefix shared by several samples; the message names some of them."""


class NotAShard(LookupError):
    """A manifest names a shard that index.json does not list, or one outside OUT/shards."""


def _first(hit: pa.Table) -> dict[str, Any]:
    """One row of rows sharing an id: the kept one (dedup-dropped copies share its id)."""
    kept = hit.filter(pc.equal(hit.column("status"), "kept"))
    return (kept if kept.num_rows else hit).slice(0, 1).to_pylist()[0]


def find_row(out: str | Path, ident: str, keys: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The manifest row of a sample id, any unique id prefix, or an input key/uri (also any of ``keys``:
    the spellings the build gives the path, e.g. made absolute). AmbiguousId when a prefix is shared."""
    table = pq.read_table(OutLayout(out).manifest)
    for column, values in (("id", [ident]), ("key", [ident, *keys]), ("uri", [ident, *keys])):
        hit = table.filter(pc.is_in(table.column(column), pa.array(values, pa.string())))
        if hit.num_rows:
            return _first(hit)
    prefix = ident.lower()
    if prefix and set(prefix) <= _HEX:
        hit = table.filter(pc.starts_with(pc.fill_null(table.column("id"), ""), prefix))
        ids = sorted(set(hit.column("id").to_pylist()))
        if len(ids) > 1:
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            raise AmbiguousId(f"{ident!r} is the start of {len(ids)} sample ids ({shown}); give more characters")
        if ids:
            return _first(hit)
    return None


def shard_file(out: str | Path, shard_url: str) -> Path:
    """The file of a shard that OUT's index.json lists, inside OUT/shards; NotAShard otherwise."""
    layout = OutLayout(out)
    listed = {s.get("url") for s in json.loads(layout.index.read_text()).get("shardlist", [])} if layout.index.exists() else set()
    if shard_url not in listed:
        raise NotAShard(f"{shard_url!r} is not a shard listed in {layout.index}")
    path = (layout.root / shard_url).resolve()
    if layout.shards.resolve() not in path.parents:
        raise NotAShard(f"{shard_url!r} is outside {layout.shards}")
    return path


def read_sample(out: str | Path, shard_url: str, sample_id: str) -> dict[str, bytes]:
    """All members of one sample, by extension (only from a shard index.json lists)."""
    members: dict[str, bytes] = {}
    with tarfile.open(shard_file(out, shard_url), "r:") as tar:
        for info in tar:
            key, _, ext = info.name.partition(".")
            if key == sample_id:
                members[ext] = tar.extractfile(info).read()
            elif members:
                break  # a sample's members are contiguous
    return members


def annotation(out: str | Path, row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(read_sample(out, row["shard"], row["id"])["json"])
