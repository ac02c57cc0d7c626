"""Resume state and finalize: committed parts in, manifest.parquet + index.json + stats.json out.

Finalize is a pure function of the committed parts (and the shards they name), so running it
again, after a crash or on an already finished output, gives the same files. It settles the two
kinds of duplicates a distributed run can produce:

- the same input committed twice (a write task retried after it had committed): the first part
  (by name) keeps it, the other copy is removed from its shard;
- the same image under two inputs in different parts (exact duplicates): the lowest input index
  keeps it, the others become ``dropped`` by ``dedup``.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hoiforge.datasets.contract import SHARD_NAME
from hoiforge.pipeline.layout import OutLayout, commit, tmp_path_for, write_atomic
from hoiforge.pipeline.writer import PART_META_KEY

WIDS_KIND = "wids-shard-index-v1"


def committed_parts(layout: OutLayout) -> list[Path]:
    return sorted(layout.parts.glob("part-*.parquet")) if layout.parts.exists() else []


def part_shards(path: Path) -> list[dict[str, Any]]:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(PART_META_KEY, b"[]"))


def committed_keys(layout: OutLayout) -> set[str]:
    keys: set[str] = set()
    for part in committed_parts(layout):
        keys.update(pq.read_table(part, columns=["key"]).column("key").to_pylist())
    return keys


def clean_uncommitted(layout: OutLayout) -> list[Path]:
    """Delete temp files and shards no committed part names (leftovers of a killed run)."""
    named = {Path(s["url"]).name for part in committed_parts(layout) for s in part_shards(part)}
    removed = []
    for folder in (layout.shards, layout.parts, layout.root):
        if not folder.exists():
            continue
        for p in folder.iterdir():
            orphan = folder == layout.shards and SHARD_NAME.match(p.name) and p.name not in named
            if p.name.startswith(".tmp-") or orphan:
                p.unlink()
                removed.append(p)
    return removed


def next_shard_seq(layout: OutLayout) -> dict[str, int]:
    """The first free sequence number per split (after committed shards and any leftovers)."""
    start: dict[str, int] = {}
    for p in layout.shards.glob("*.tar") if layout.shards.exists() else []:
        m = SHARD_NAME.match(p.name)
        if m:
            start[m.group(1)] = max(start.get(m.group(1), 0), int(m.group(2)) + 1)
    return start


def _read_parts(parts: list[Path]) -> pa.Table:
    tables = []
    for i, part in enumerate(parts):
        t = pq.read_table(part).replace_schema_metadata(None)
        tables.append(t.append_column("_part", pa.array([i] * t.num_rows, pa.int32())))
    return pa.concat_tables(tables, promote_options="permissive")


def _rewrite_without(path: Path, remove: set[str]) -> dict[str, Any]:
    """Rewrite a shard without the samples whose key is in ``remove``; returns its new info."""
    from hoiforge.pipeline.writer import write_tar

    kept: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            key, _, ext = info.name.partition(".")
            if key not in remove:
                kept.setdefault(key, {})[ext] = tar.extractfile(info).read()
    if not kept:
        path.unlink()
        return {"filesize": 0, "md5sum": None, "nsamples": 0}
    tmp = tmp_path_for(path)
    info = write_tar(tmp, list(kept.items()))
    commit(tmp, path)
    return {**info, "nsamples": len(kept)}


def _shard_info_from_file(path: Path) -> dict[str, Any]:
    import hashlib

    md5 = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
    with tarfile.open(path, "r:") as tar:
        keys = {m.name.partition(".")[0] for m in tar}
    return {"filesize": path.stat().st_size, "md5sum": md5.hexdigest(), "nsamples": len(keys)}


def finalize(layout: OutLayout, listing: pa.Table, run_info: dict[str, Any]) -> dict[str, Any]:
    """Write manifest.parquet, index.json (+ per split) and stats.json; returns the stats."""
    parts = committed_parts(layout)
    if not parts:
        raise RuntimeError("nothing committed yet")
    table = _read_parts(parts)
    shard_infos: dict[str, dict[str, Any]] = {}
    for part in parts:
        for s in part_shards(part):
            shard_infos.setdefault(s["url"], s)

    rows = table.to_pylist()
    # 1. One row per input: the first part (by name) that committed it wins.
    by_key: dict[str, dict] = {}
    remove: dict[str, set[str]] = defaultdict(set)
    for row in sorted(rows, key=lambda r: r["_part"]):
        if row["key"] in by_key:
            if row["status"] == "kept":
                remove[row["shard"]].add(row["id"])
            continue
        by_key[row["key"]] = row
    # 2. One kept sample per image id: the lowest input index wins.
    owner: dict[str, dict] = {}
    for row in sorted(by_key.values(), key=lambda r: r["index"]):
        if row["status"] != "kept":
            continue
        first = owner.setdefault(row["id"], row)
        if first is not row:
            remove[row["shard"]].add(row["id"])
            row.update(status="dropped", stage="dedup", reason=f"exact duplicate of {first['key']}", shard=None, split=None)

    # A duplicate copy may share the winner's shard and key; never remove a key its shard still owns.
    owned = defaultdict(set)
    for row in by_key.values():
        if row["status"] == "kept":
            owned[row["shard"]].add(row["id"])
    for url, ids in remove.items():
        ids -= owned[url]
        path = layout.root / url
        if path.exists():
            info = _rewrite_without(path, ids) if ids else _shard_info_from_file(path)
            shard_infos[url] = {**shard_infos.get(url, {"url": url}), **info}
    listed_keys = set(listing.column("key").to_pylist())
    final_rows = sorted(by_key.values(), key=lambda r: r["index"])
    for row in final_rows:
        row.pop("_part", None)
    manifest = pa.Table.from_pylist(final_rows, schema=table.drop_columns(["_part"]).schema)
    buf = io.BytesIO()
    # Small row groups: the viewer reads one sample's row without decoding a million others.
    pq.write_table(manifest, buf, row_group_size=65536)
    write_atomic(layout.manifest, buf.getvalue())

    kept_per_shard = Counter(r["shard"] for r in final_rows if r["status"] == "kept")
    shardlist = []
    for url in sorted(kept_per_shard):
        info = shard_infos[url]
        if info["nsamples"] != kept_per_shard[url]:
            raise RuntimeError(f"{url}: holds {info['nsamples']} samples, manifest says {kept_per_shard[url]}")
        shardlist.append({"url": url, "nsamples": info["nsamples"], "filesize": info["filesize"], "md5sum": info["md5sum"], "split": url.split("/")[-1].split("-")[0]})
    _write_index(layout.index, shardlist, name=layout.root.name)
    for split in sorted({s["split"] for s in shardlist}):
        _write_index(layout.index_for(split), [s for s in shardlist if s["split"] == split], name=f"{layout.root.name}-{split}")

    stats = compute_stats(manifest, shardlist, run_info)
    stats["inputs_listed"] = len(listed_keys)
    stats["inputs_unaccounted"] = len(listed_keys - set(by_key))
    write_atomic(layout.stats, json.dumps(stats, indent=2).encode())
    return stats


def _write_index(path: Path, shardlist: list[dict[str, Any]], name: str) -> None:
    doc = {"__kind__": WIDS_KIND, "wids_version": 1, "name": name, "shardlist": [{k: v for k, v in s.items() if k != "split"} for s in shardlist]}
    write_atomic(path, json.dumps(doc, indent=2).encode())


def compute_stats(manifest: pa.Table, shardlist: list[dict[str, Any]], run_info: dict[str, Any]) -> dict[str, Any]:
    status = Counter(manifest.column("status").to_pylist())
    reasons: dict[str, Counter] = defaultdict(Counter)
    for st, stage, reason in zip(*(manifest.column(c).to_pylist() for c in ("status", "stage", "reason"))):
        if st != "kept":
            reasons[f"{st}:{stage}"][reason_class(reason)] += 1
    times = {}
    for name in manifest.column_names:
        if name.startswith("m.time."):
            col = manifest.column(name)
            mean = pc.mean(col).as_py()
            if mean is not None:
                times[name[len("m.time.") :]] = round(mean, 6)
    split = Counter(s["split"] for s in shardlist for _ in range(s["nsamples"]))
    return {
        "inputs": manifest.num_rows,
        "kept": status.get("kept", 0),
        "dropped": status.get("dropped", 0),
        "failed": status.get("failed", 0),
        "by_stage": {k: dict(v.most_common()) for k, v in sorted(reasons.items())},
        "splits": dict(split),
        "shards": len(shardlist),
        "shard_bytes": sum(s["filesize"] for s in shardlist),
        "seconds_per_image": times,
        **run_info,
    }


def reason_class(reason: str | None) -> str:
    """Reasons grouped for counting: per-input details (paths, ids) cut off, numbers kept."""
    if not reason:
        return "(none)"
    return reason.split(" of /")[0].split(" of s3://")[0].split(": /")[0][:200]
