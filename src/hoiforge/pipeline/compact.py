"""Shard compaction: partial shards merged into full ones at finalize, members copied byte for byte.

A Ray write task gets about ``shard_max_count`` rows, dropped rows included, and writes its own
shards per split, so at a 30% keep rate its train shard holds ~300 of 1000 samples and its test
shard one or two. Finalize merges every shard under ``FULL`` of the count and byte limits:

- the samples of those shards, in input-index order, are rolled into new shards by the same limits
  (so the layout is a function of which samples are kept, not of how Ray bundled the rows);
- the new shards are renamed into place, then one compaction record is committed
  (``_work/compactions/compact-NNNNNN.parquet``: which (shard, id) moved where, which shards it
  retired, the new shards' infos), then the retired shards are deleted.

The record is the commit marker, as a manifest part is for a write: a kill before it leaves new
shards that nothing names (resume deletes them and compacts again, to the same result); a kill
after it leaves retired shards that resume deletes. Finalize replays the records over the parts,
so the manifest's ``shard`` column and the wids indexes always name where a sample is now.

At most one shard per split stays under ``FULL`` after a compaction: the last one rolled, marked
``open`` so that the next finalize (a resumed or incremental run) fills it up.
"""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hoiforge.datasets.contract import SHARD_NAME, shard_name
from hoiforge.datasets.layout import OutLayout, commit, tmp_path_for

FULL = 0.9  # a shard holding this share of shard_max_count (or of shard_max_bytes) is left alone
RECORD_META_KEY = b"hoiforge.compaction"
TAR_BLOCK, TAR_RECORD = 512, 10240


def records(layout: OutLayout) -> list[Path]:
    return sorted(layout.compactions.glob("compact-*.parquet")) if layout.compactions.exists() else []


def record_meta(path: Path) -> dict[str, Any]:
    return json.loads((pq.read_schema(path).metadata or {})[RECORD_META_KEY])


def named_by_records(layout: OutLayout) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(infos of the shards compactions made and did not retire since, every retired url)."""
    made: dict[str, dict[str, Any]] = {}
    retired: set[str] = set()
    for path in records(layout):
        meta = record_meta(path)
        for url in meta["retired"]:
            retired.add(url)
            made.pop(url, None)
        for info in meta["shards"]:
            made[info["url"]] = info
    return made, retired


def used_urls(layout: OutLayout) -> set[str]:
    """Every shard url a record ever made or retired (sequence numbers are never reused)."""
    urls: set[str] = set()
    for path in records(layout):
        meta = record_meta(path)
        urls.update(meta["retired"])
        urls.update(s["url"] for s in meta["shards"])
    return urls


def replay(table: pa.Table, layout: OutLayout) -> pa.Table:
    """``table`` (rows with ``shard`` and ``id``) with each shard column moved as the records say."""
    for path in records(layout):
        table = apply(table, path)
    return table


def apply(table: pa.Table, path: Path) -> pa.Table:
    """``table`` with the moves of one record applied to its ``shard`` column."""
    moves = pq.read_table(path).replace_schema_metadata(None)
    if moves.num_rows:
        n = table.num_rows
        rows = table.append_column("_row", pa.array(range(n), pa.int64())).select(["_row", "shard", "id"])
        joined = rows.join(moves, keys=["shard", "id"], right_keys=["old_shard", "id"], join_type="left outer").sort_by("_row")
        shard = pc.coalesce(joined.column("new_shard"), joined.column("shard"))
        table = table.set_column(table.schema.get_field_index("shard"), "shard", shard.cast(pa.string()))
    return table


def is_full(info: dict[str, Any], max_count: int, max_bytes: int) -> bool:
    if info.get("open") is False:  # a compaction closed it at a limit: full by construction
        return True
    return info["nsamples"] >= FULL * max_count or info["filesize"] >= FULL * max_bytes


def _tar_bytes(sizes: list[int]) -> int:
    return sum(TAR_BLOCK + -(-n // TAR_BLOCK) * TAR_BLOCK for n in sizes)


class _TarSink:
    """A shard written sample by sample (pipeline/writer.py ShardTar), renamed into place on close."""

    def __init__(self, final: Path):
        from hoiforge.pipeline.writer import ShardTar

        self.final, self.tmp = final, tmp_path_for(final)
        self.tar = ShardTar(self.tmp)

    @property
    def nsamples(self) -> int:
        return self.tar.nsamples

    def add(self, key: str, members: list[tuple[str, bytes]]) -> None:
        self.tar.add(key, members)

    def close(self) -> dict[str, Any]:
        info = self.tar.close()
        commit(self.tmp, self.final)
        return {**info, "nsamples": self.tar.nsamples}


class _ShardReader:
    """Members of samples in a shard by seek, without reading the rest (offsets read once)."""

    def __init__(self, path: Path):
        self.path = path
        self.offsets: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                key, _, ext = m.name.partition(".")
                self.offsets[key].append((ext, m.offset_data, m.size))
        self.f = open(path, "rb")  # noqa: SIM115 - held for the reader's life, closed by close()

    def sizes(self, key: str) -> list[int]:
        return [size for _, _, size in self.offsets[key]]

    def members(self, key: str) -> list[tuple[str, bytes]]:
        out = []
        for ext, offset, size in self.offsets[key]:
            self.f.seek(offset)
            out.append((ext, self.f.read(size)))
        return out

    def close(self) -> None:
        self.f.close()


def compact(
    layout: OutLayout, kept: pa.Table, shard_infos: dict[str, dict[str, Any]], max_count: int, max_bytes: int, next_seq: dict[str, int]
) -> Path | None:
    """Merge the partial shards of each split (see the module doc); returns the committed record, or
    None when no split has two partial shards. ``kept``: the manifest's kept rows (index, id, split, shard)."""
    present = kept.filter(pc.is_in(kept.column("shard"), pa.array(sorted(shard_infos), pa.string())))
    partial = {url for url, info in shard_infos.items() if not is_full(info, max_count, max_bytes)}
    by_split: dict[str, list[str]] = defaultdict(list)
    for url in sorted(partial):
        by_split[SHARD_NAME.match(Path(url).name).group(1)].append(url)
    by_split = {split: urls for split, urls in by_split.items() if len(urls) > 1}
    if not by_split:
        return None

    moves: list[dict[str, str]] = []
    made: list[dict[str, Any]] = []
    retired: list[str] = []
    seq = dict(next_seq)
    # A tar ends with two zero blocks and is padded to whole 10 kB records: what members may take.
    room = (max_bytes // TAR_RECORD) * TAR_RECORD - 2 * TAR_BLOCK
    for split, urls in sorted(by_split.items()):
        rows = present.filter(pc.is_in(present.column("shard"), pa.array(urls, pa.string()))).sort_by("index")
        ids, shards = rows.column("id").to_pylist(), rows.column("shard").to_pylist()
        remaining = defaultdict(int)
        for url in shards:
            remaining[url] += 1
        readers: dict[str, _ShardReader] = {}
        sink: _TarSink | None = None
        new_url, size = "", 0
        for sid, url in zip(ids, shards):
            if url not in readers:
                readers[url] = _ShardReader(layout.root / url)
            reader = readers[url]
            nbytes = _tar_bytes(reader.sizes(sid))
            if sink is not None and (sink.nsamples >= max_count or size + nbytes > room):
                made.append({**sink.close(), "url": new_url, "open": False})
                sink = None
            if sink is None:
                name = shard_name(split, seq.get(split, 0))
                seq[split] = seq.get(split, 0) + 1
                new_url, sink, size = f"shards/{name}", _TarSink(layout.shards / name), 0
            sink.add(sid, reader.members(sid))
            size += nbytes
            moves.append({"old_shard": url, "id": sid, "new_shard": new_url})
            remaining[url] -= 1
            if not remaining[url]:  # every sample of that shard copied: let its file go
                readers.pop(url).close()
        if sink is not None:
            made.append({**sink.close(), "url": new_url, "open": True})
        retired += urls

    table = pa.Table.from_pylist(moves, schema=pa.schema([("old_shard", pa.string()), ("id", pa.string()), ("new_shard", pa.string())]))
    table = table.replace_schema_metadata({RECORD_META_KEY: json.dumps({"shards": made, "retired": retired}).encode()})
    layout.compactions.mkdir(parents=True, exist_ok=True)
    final = layout.compactions / f"compact-{len(records(layout)):06d}.parquet"
    tmp = tmp_path_for(final)
    pq.write_table(table, tmp)
    commit(tmp, final)
    delete_retired(layout)
    return final


def delete_retired(layout: OutLayout) -> None:
    """Remove the shards a committed record retired (still there when a kill came in between)."""
    made, retired = named_by_records(layout)
    for url in retired - set(made):
        (layout.root / url).unlink(missing_ok=True)
