"""Time ``hoiforge stats`` (and the viewer's listing) on a synthetic manifest of 3 million rows.

The manifest has the real columns (MANIFEST_BASE + the m.* metrics of the hoihuman recipe's
stages) with plausible distributions: ~60 % kept, drops spread over the stages with the
reasons those stages write (dedup reasons carry a per-input path, as in real builds), 3,000
shards of 1,000 samples in index.json. Nothing is read from disk but the manifest and index.

    python bench/report_3m.py --rows 3000000 --out /tmp/report3m        # generate (once) + time
    python bench/report_3m.py --out /tmp/report3m --skip-generate        # time again
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

STAGES = ["decode", "resolution", "person", "products", "cleanup", "pose", "edges", "quality", "caption"]
DROPS = {  # stage: (share of all inputs dropped there, reason)
    "decode": (0.01, "cannot decode: UnidentifiedImageError"),
    "resolution": (0.08, "short side 180 < 256"),
    "person": (0.15, "0 persons at score >= 0.5 (need 1-5)"),
    "products": (0.07, "no product above box_threshold 0.35"),
    "cleanup": (0.02, "text mask covers 0.31 > 0.2 of the image"),
    "quality": (0.05, "aesthetic 5.1 < 6"),
    "dedup": (0.02, None),  # "exact duplicate of <key>": one distinct reason per row
}
LABELS = ["shoes", "bottle", "cup", "phone", "jacket", "dress", "hat", "glasses", "book", "cosmetics", "furniture", "sneaker"]


def hex_strings(rng: np.random.Generator, n: int, width: int) -> pa.Array:
    """n random lowercase hex strings of ``width`` chars, built without a Python loop."""
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    chars = digits[rng.integers(0, 16, (n, width), dtype=np.uint8)]
    return pa.array(chars.view(f"S{width}").ravel()).cast(pa.string())


def synthetic_manifest(n: int, seed: int = 0) -> tuple[pa.Table, list[dict]]:
    rng = np.random.default_rng(seed)
    index = np.arange(n, dtype=np.int64)
    # Status and stage: each row draws where (if anywhere) it leaves the funnel.
    names = [*list(DROPS), "kept"]
    shares = np.array([v[0] for v in DROPS.values()] + [1 - sum(v[0] for v in DROPS.values())])
    fate = rng.choice(len(names), n, p=shares)
    fate_name = np.array(names, dtype=object)[fate]
    kept = fate_name == "kept"
    status = np.where(kept, "kept", np.where(fate_name == "decode", "failed", "dropped")).astype(object)
    stage = np.where(kept, None, fate_name).astype(object)
    reason = np.array([DROPS[s][1] if s in DROPS and s != "dedup" else None for s in names], dtype=object)[fate]
    ids = hex_strings(rng, n, 20)
    uri_tail = pa.compute.binary_join_element_wise(pa.array(np.char.mod("%09d", index)), ".jpg", "")
    uris = pa.compute.binary_join_element_wise("s3://bucket/photos/", uri_tail, "")
    dedup = fate_name == "dedup"
    reason_arr = pa.array(reason, pa.string())
    dedup_reasons = pa.compute.binary_join_element_wise("exact duplicate of ", uris, "")
    reason_arr = pa.compute.if_else(pa.array(dedup), dedup_reasons, reason_arr)

    # Kept rows go to train/test by id and to 1,000-sample shards in input order.
    kept_pos = np.cumsum(kept) - 1
    test = kept & (rng.random(n) < 0.0016)
    split = np.where(kept, np.where(test, "test", "train"), None).astype(object)
    shard_seq = np.where(kept, kept_pos // 1000, -1)
    shard_names = np.char.add(np.char.add("shards/train-", np.char.zfill(shard_seq.clip(0).astype(str), 6)), ".tar").astype(object)
    shard = np.where(kept, shard_names, None)

    width = rng.choice([256, 512, 640, 768, 800, 1024, 1080, 1200, 1500, 2048, 3000], n).astype(np.int64)
    height = (width * rng.choice([0.5, 0.75, 1.0, 1.25, 1.333, 1.5], n)).astype(np.int64)
    decoded = fate_name != "decode"
    after = {s: np.isin(fate_name, ["kept", "dedup", *STAGES[STAGES.index(s) :]]) & decoded for s in STAGES}  # reached stage s

    def null(values, ran):  # null where the stage did not run
        return pa.array(values, mask=~ran)

    columns = {
        "key": uris, "index": index, "uri": uris, "member": pa.nulls(n, pa.string()),
        "status": pa.array(status, pa.string()), "stage": pa.array(stage, pa.string()), "reason": reason_arr,
        "id": ids, "split": pa.array(split, pa.string()), "shard": pa.array(shard, pa.string()),
        "sha256": hex_strings(rng, n, 64), "bytes": rng.integers(20_000, 3_000_000, n),
        "m.brisque": null(rng.gamma(4, 6, n), after["quality"]),
        "m.caption_words": null(rng.poisson(60, n), after["caption"]),
        "m.cleanup_fraction": null(rng.beta(1, 30, n), after["cleanup"]),
        "m.edge_fraction": null(rng.beta(2, 40, n), after["edges"]),
        "m.height": null(height, decoded),
        "m.kp_body": null(rng.uniform(5, 17, n).round(3), after["pose"]),
        "m.kp_face": null(rng.uniform(0, 68, n).round(3), after["pose"]),
        "m.kp_feet": null(rng.uniform(0, 6, n).round(3), after["pose"]),
        "m.kp_hands": null(rng.uniform(0, 42, n).round(3), after["pose"]),
        "m.persons": null(rng.choice([0, 1, 2, 3, 4, 5, 6], n, p=[0.1, 0.5, 0.2, 0.1, 0.05, 0.03, 0.02]), after["person"]),
        "m.product_area": null(rng.beta(2, 6, n), after["products"]),
        "m.product_label": null(np.array(LABELS, dtype=object)[rng.integers(0, len(LABELS), n)], after["products"]),
        "m.products": null(rng.integers(0, 6, n), after["products"]),
        "m.reencoded": null(rng.random(n) < 0.1, decoded),
        "m.text_regions": null(rng.poisson(1.5, n), after["cleanup"]),
        "m.text_removed": null(rng.poisson(0.5, n), after["cleanup"]),
        **{f"m.time.{s}": null(rng.gamma(2, 0.05, n), after[s] | (fate_name == s)) for s in STAGES},
        "m.width": null(width, decoded),
    }  # fmt: skip
    table = pa.table(columns)
    nshards = int(shard_seq.max()) + 1
    shardlist = [
        {"url": f"shards/train-{i:06d}.tar", "nsamples": 1000, "filesize": int(rng.integers(400, 1000)) * 1_000_000, "md5sum": "0" * 32}
        for i in range(nshards)
    ]
    shardlist[-1]["nsamples"] = int(kept.sum()) - 1000 * (nshards - 1)
    return table, shardlist


def generate(out: Path, rows: int) -> None:
    t0 = time.perf_counter()
    table, shardlist = synthetic_manifest(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "_work").mkdir(exist_ok=True)
    pq.write_table(table, out / "manifest.parquet")
    (out / "index.json").write_text(
        json.dumps({"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": out.name, "shardlist": shardlist})
    )
    (out / "_work" / "recipe.json").write_text(json.dumps({"name": "synthetic", "stages": [{"stage": s} for s in STAGES]}))
    size = (out / "manifest.parquet").stat().st_size
    print(f"generated {rows:,} rows, {len(table.column_names)} columns, {size / 1e6:.0f} MB manifest in {time.perf_counter() - t0:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/report3m"))
    ap.add_argument("--skip-generate", action="store_true")
    args = ap.parse_args()
    if not args.skip_generate:
        generate(args.out, args.rows)

    # 1. The command as a user runs it (fresh interpreter: imports included).
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hoiforge.report", "stats", str(args.out)], check=True)
    print(f"hoiforge stats (wall, fresh process): {time.perf_counter() - t0:.2f} s")

    # 2. In-process split: figures (manifest → JSON) vs page rendering (matplotlib).
    from hoiforge.report.html import build_report

    result = build_report(args.out)
    print("in process: figures {figures:.2f} s, page {render:.2f} s".format(**result["seconds"]))

    # 3. The viewer: load the listing once, then filtered pages (first and repeated).
    from hoiforge.report.samples import Query, SampleIndex

    t0 = time.perf_counter()
    index = SampleIndex(args.out)
    print(f"viewer: listing loaded in {time.perf_counter() - t0:.2f} s")
    for q in (Query(status="dropped"), Query(stage="person", reason="persons"), Query(label="shoes", score="brisque", max_score=20)):
        t0 = time.perf_counter()
        first = index.page(q, 0)
        t1 = time.perf_counter()
        index.page(q, first["pages"] - 1)
        t2 = time.perf_counter()
        print(f"viewer: {q} → {first['total']:,} rows; first page {1000 * (t1 - t0):.0f} ms, last page {1000 * (t2 - t1):.0f} ms")
    t0 = time.perf_counter()
    index.row(args.rows - 1)
    print(f"viewer: one full manifest row (last input) {1000 * (time.perf_counter() - t0):.0f} ms")


if __name__ == "__main__":
    main()
