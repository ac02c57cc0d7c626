"""Resume state and finalize: committed parts in, manifest.parquet + index.json + stats.json out.

Finalize is a pure function of the committed parts (and the shards they name), so running it
again, after a crash or on an already finished output, gives the same files. It settles the two
kinds of duplicates a distributed run can produce:

- the same input committed twice (a write task retried after it had committed): the first part
  (by name) keeps it, the other copy is removed from its shard;
- the same image under two inputs in different parts (exact duplicates): the lowest input index
  keeps it, the others become ``dropped`` by ``dedup``;
- then each stage's finalize hook (``Stage.settle``), in recipe order: near-duplicates when the
  recipe has a ``neardup`` stage (stages/neardup.py).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hoiforge.datasets.contract import CHECKSUM_KEYS, SHARD_NAME
from hoiforge.datasets.layout import OutLayout, commit, tmp_path_for, write_atomic
from hoiforge.datasets.reasons import reason_stats
from hoiforge.pipeline import compact
from hoiforge.pipeline.recipe import OutputSpec, built_stages
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
    """Delete temp files and shards no committed part or compaction record names (leftovers of a
    killed run), and shards a committed compaction retired."""
    made, retired = compact.named_by_records(layout)
    named = {Path(s["url"]).name for part in committed_parts(layout) for s in part_shards(part) if s["url"] not in retired}
    named |= {Path(url).name for url in made}
    removed = []
    for folder in (layout.shards, layout.parts, layout.compactions, layout.root):
        if not folder.exists():
            continue
        for p in folder.iterdir():
            orphan = folder == layout.shards and SHARD_NAME.match(p.name) and p.name not in named
            if p.name.startswith(".tmp-") or orphan:
                p.unlink()
                removed.append(p)
    return removed


def next_shard_seq(layout: OutLayout) -> dict[str, int]:
    """The first free sequence number per split (after committed shards, any leftovers, and every
    name a part or compaction record ever used: a retired name is never given to another shard)."""
    start: dict[str, int] = {}
    names = [p.name for p in layout.shards.glob("*.tar")] if layout.shards.exists() else []
    names += [Path(url).name for url in compact.used_urls(layout)]
    names += [Path(s["url"]).name for part in committed_parts(layout) for s in part_shards(part)]
    for name in names:
        m = SHARD_NAME.match(name)
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
        return {"filesize": 0, "sha256": None, "nsamples": 0}
    tmp = tmp_path_for(path)
    info = write_tar(tmp, list(kept.items()))
    commit(tmp, path)
    return {**info, "nsamples": len(kept)}


def _shard_info_from_file(path: Path) -> dict[str, Any]:
    import hashlib

    with open(path, "rb") as f:
        sha256 = hashlib.file_digest(f, "sha256")
    with tarfile.open(path, "r:") as tar:
        keys = {m.name.partition(".")[0] for m in tar}
    return {"filesize": path.stat().st_size, "sha256": sha256.hexdigest(), "nsamples": len(keys)}


def settle_duplicates(table: pa.Table) -> tuple[pa.Table, dict[str, set[str]]]:
    """One row per input, exact duplicates marked; and, per shard, the ids to remove from it.

    Column-wise (group_by, masks) so that finalize stays seconds on millions of rows; only the
    duplicates themselves, which are few, go through Python.
    """
    n = table.num_rows
    table = table.append_column("_row", pa.array(np.arange(n, dtype=np.int64)))
    remove: dict[str, set[str]] = defaultdict(set)

    # 1. The same input committed twice (a retried write): the first part by name wins. Parts
    #    are concatenated in name order, so that is the lowest row number.
    first = table.group_by("key", use_threads=False).aggregate([("_row", "min")]).column("_row_min").to_numpy()
    keep = np.zeros(n, dtype=bool)
    keep[first] = True
    copies = table.select(["key", "id", "shard", "status"]).filter(pa.array(~keep))
    copies = copies.filter(pc.equal(copies.column("status"), "kept"))
    for shard, sid in zip(copies.column("shard").to_pylist(), copies.column("id").to_pylist()):
        remove[shard].add(sid)
    table = table.filter(pa.array(keep))

    # 2. The same image under several inputs: the lowest input index keeps it.
    slim = table.select(["index", "key", "id", "shard", "status"])
    kept = slim.filter(pc.equal(slim.column("status"), "kept"))
    per_id = kept.group_by("id", use_threads=False).aggregate([("index", "min"), ("index", "count")])
    shared = per_id.filter(pc.greater(per_id.column("index_count"), 1))
    if shared.num_rows:
        owner_index = dict(zip(shared.column("id").to_pylist(), shared.column("index_min").to_pylist()))
        group = kept.filter(pc.is_in(kept.column("id"), shared.column("id"))).select(["index", "key", "id", "shard"]).to_pylist()
        key_at = {r["index"]: r["key"] for r in group}
        owner_key = {}
        for r in group:
            if r["index"] != owner_index[r["id"]]:
                owner_key[r["index"]] = key_at[owner_index[r["id"]]]
                remove[r["shard"]].add(r["id"])
        index = table.column("index").to_numpy()
        losing = np.isin(index, np.fromiter(owner_key, dtype=np.int64))
        reasons = np.full(table.num_rows, None, dtype=object)
        reasons[losing] = [f"exact duplicate of {owner_key[i]}" for i in index[losing]]
        params = np.full(table.num_rows, None, dtype=object)
        params[losing] = [json.dumps({"of": owner_key[i]}) for i in index[losing]]
        mask = pa.array(losing)
        for name, value in (("status", "dropped"), ("stage", "dedup"), ("reason_code", "dedup.exact"), ("shard", None), ("split", None)):
            column = table.column(name)
            table = table.set_column(table.schema.get_field_index(name), name, pc.if_else(mask, pa.scalar(value, column.type), column))
        for name, values in (("reason", reasons), ("reason_params", params)):
            table = table.set_column(
                table.schema.get_field_index(name), name, pc.if_else(mask, pa.array(values, pa.string()), table.column(name))
            )
    table = table.drop_columns(["_row", "_part"])
    index = table.column("index").to_numpy()
    if not np.all(index[1:] >= index[:-1]):
        table = table.sort_by("index")
    return table, remove


def output_spec_of(layout: OutLayout) -> OutputSpec:
    """The output settings the build was made with (recipe.json), the defaults without one."""
    if layout.recipe.exists():
        return OutputSpec.model_validate(json.loads(layout.recipe.read_text()).get("output", {}))
    return OutputSpec()


def compact_shards(
    layout: OutLayout, manifest: pa.Table, kept: pa.Table, shard_infos: dict[str, dict[str, Any]], spec: OutputSpec
) -> tuple[pa.Table, pa.Table]:
    """Merge partial shards (pipeline/compact.py); the manifest and kept rows with shards moved,
    ``shard_infos`` updated in place."""
    counts = pc.value_counts(kept.column("shard"))
    infos = {url: shard_infos[url] for url in counts.field("values").to_pylist()}
    slim = kept.select(["index", "id", "shard"])
    record = compact.compact(layout, slim, infos, spec.shard_max_count, spec.shard_max_bytes, next_shard_seq(layout))
    if record is None:
        return manifest, kept
    meta = compact.record_meta(record)
    for url in meta["retired"]:
        shard_infos.pop(url, None)
    shard_infos.update({s["url"]: s for s in meta["shards"]})
    manifest = compact.apply(manifest, record)
    return manifest, manifest.filter(pc.equal(manifest.column("status"), "kept"))


def finalize(layout: OutLayout, listing: pa.Table, run_info: dict[str, Any], spec: OutputSpec | None = None) -> dict[str, Any]:
    """Write manifest.parquet, index.json (+ per split) and stats.json; returns the stats.
    Partial shards are merged first (``spec``: the output settings, by default the build's own)."""
    parts = committed_parts(layout)
    if not parts:
        from hoiforge.errors import OutputError

        raise OutputError(f"{layout.root}: no input has been committed yet, so there is nothing to finalize; run the build command again")
    compact.delete_retired(layout)  # a kill may have come between a compaction's record and its deletions
    made, retired = compact.named_by_records(layout)
    shard_infos: dict[str, dict[str, Any]] = {}
    for part in parts:
        for s in part_shards(part):
            if s["url"] not in retired:
                shard_infos.setdefault(s["url"], s)
    shard_infos.update(made)
    manifest, remove = settle_duplicates(compact.replay(_read_parts(parts), layout))
    for stage in built_stages(layout.recipe):
        manifest, settled = stage.settle(manifest, layout)
        for url, ids in settled.items():
            remove[url] |= ids

    kept = manifest.filter(pc.equal(manifest.column("status"), "kept"))
    if remove:
        # A removed copy may share its shard and key with the winner: never remove a key the shard still owns.
        still = kept.filter(pc.is_in(kept.column("shard"), pa.array(sorted(remove), pa.string())))
        for url, sid in zip(still.column("shard").to_pylist(), still.column("id").to_pylist()):
            remove[url].discard(sid)
        for url, ids in remove.items():
            path = layout.root / url
            if path.exists():
                info = _rewrite_without(path, ids) if ids else _shard_info_from_file(path)
                shard_infos[url] = {**shard_infos.get(url, {"url": url}), **info}

    manifest, kept = compact_shards(layout, manifest, kept, shard_infos, spec or output_spec_of(layout))

    buf = io.BytesIO()
    # Small row groups: the viewer reads one sample's row without decoding a million others.
    pq.write_table(manifest, buf, row_group_size=65536)
    write_atomic(layout.manifest, buf.getvalue())

    counts = pc.value_counts(kept.column("shard"))
    kept_per_shard = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
    shardlist = []
    for url in sorted(kept_per_shard):
        info = shard_infos[url]
        if info["nsamples"] != kept_per_shard[url]:
            raise RuntimeError(f"{url}: holds {info['nsamples']} samples, manifest says {kept_per_shard[url]}")
        shardlist.append(
            {
                "url": url,
                "nsamples": info["nsamples"],
                "filesize": info["filesize"],
                # sha256 since the writer hashes with it; parts committed by older versions say md5sum
                **{key: info[key] for key in CHECKSUM_KEYS if info.get(key)},
                "split": url.split("/")[-1].split("-")[0],
            }
        )
    _write_index(layout.index, shardlist, name=layout.root.name)
    for split in sorted({s["split"] for s in shardlist}):
        _write_index(layout.index_for(split), [s for s in shardlist if s["split"] == split], name=f"{layout.root.name}-{split}")

    stats = compute_stats(manifest, shardlist, run_info)
    if "profile" in run_info:  # --profile: the per-image side of it, over every row of the manifest
        from hoiforge.pipeline.profile import manifest_profile

        stats["profile"] = {**run_info["profile"], **manifest_profile(manifest)}
    stats["inputs_listed"] = listing.num_rows
    stats["inputs_unaccounted"] = int(pc.sum(pc.invert(pc.is_in(listing.column("key"), manifest.column("key")))).as_py() or 0)
    write_atomic(layout.stats, json.dumps(stats, indent=2).encode())
    write_card(layout, stats)
    return stats


def declared_shape(layout: OutLayout) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    """(the members every sample carries, the json template) the build's recipe declares; ((), None)
    for an output without a recipe.json this version can read."""
    try:
        import warnings

        from hoiforge.datasets.schema import build_template
        from hoiforge.pipeline.recipe import parse_recipe
        from hoiforge.pipeline.runner import instantiate, uniform_members

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an old recipe form was reported when the build started
            stages = instantiate(parse_recipe(json.loads(layout.recipe.read_text()), str(layout.recipe)))
        return uniform_members(stages), build_template(stages)
    except Exception:  # noqa: BLE001 - received or older outputs: no declared shape to compare with
        return (), None


def write_card(layout: OutLayout, stats: dict[str, Any]) -> None:
    """OUT/README.md, the dataset card (datasets/card.py), from the build's recipe.json and stats."""
    from hoiforge.datasets.card import CARD_NAME, render

    doc = json.loads(layout.recipe.read_text()) if layout.recipe.exists() else {}
    members, template = declared_shape(layout)
    image_format = output_spec_of(layout).image_format
    write_atomic(layout.root / CARD_NAME, render(doc, stats, image_format, members, template).encode())


def _write_index(path: Path, shardlist: list[dict[str, Any]], name: str) -> None:
    doc = {
        "__kind__": WIDS_KIND,
        "wids_version": 1,
        "name": name,
        "shardlist": [{k: v for k, v in s.items() if k != "split"} for s in shardlist],
    }
    write_atomic(path, json.dumps(doc, indent=2).encode())


def compute_stats(manifest: pa.Table, shardlist: list[dict[str, Any]], run_info: dict[str, Any]) -> dict[str, Any]:
    counts = pc.value_counts(manifest.column("status"))
    status = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
    by_code = reason_stats(manifest)
    by_stage: dict[str, dict[str, int]] = defaultdict(dict)
    for code, r in by_code.items():
        by_stage[f"{r['status']}:{r['stage']}"][code] = r["count"]
    times = {}
    for name in manifest.column_names:
        if name.startswith("m.time."):  # (m.wait.* and m.setup.* are --profile's, pipeline/profile.py)
            col = manifest.column(name)
            mean = pc.mean(col).as_py()
            if mean is not None:
                times[name[len("m.time.") :]] = round(mean, 6)
    split: Counter = Counter()
    for s in shardlist:
        split[s["split"]] += s["nsamples"]
    return {
        "inputs": manifest.num_rows,
        "kept": status.get("kept", 0),
        "dropped": status.get("dropped", 0),
        "failed": status.get("failed", 0),
        "by_code": by_code,
        "by_stage": {k: dict(sorted(v.items(), key=lambda kv: -kv[1])) for k, v in sorted(by_stage.items())},
        "splits": dict(split),
        "shards": len(shardlist),
        "shard_bytes": sum(s["filesize"] for s in shardlist),
        "seconds_per_image": times,
        **run_info,
    }
