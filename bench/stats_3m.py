"""``hoiforge stats`` on a 3-million-row manifest vs a plain scan of the same parquet file.

The manifest is bench/report_3m.py's synthetic one (the real columns, plausible distributions,
3,000 shards in index.json); it is generated once into ``--out``. Three timings:

1. ``hoiforge stats OUT`` as a user runs it (fresh process: imports, figures, the HTML page);
   also in process, the figures alone (manifest -> figures.json) and the page rendering.
2. pyarrow: the scan the figures need at least: read the same columns (status/stage/reason
   columns and every ``m.*`` metric), count by status and by (status, stage, reason_code), and
   per metric over the kept rows min/max/mean/median and a 20-bin histogram.
3. DuckDB (when installed: ``pip install duckdb``; optional): the same counts and per-metric
   aggregates as one SQL pass each over the parquet file.

    python bench/stats_3m.py --rows 3000000 --out /tmp/report3m      # generates once, then times
    python bench/stats_3m.py --rows 300000 --out /tmp/report300k     # quicker

Last line: hoiforge stats (whole command) / pyarrow scan seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_3m import generate

GROUP = ["status", "stage", "reason_code"]


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def kept_mask(table: pa.Table) -> pa.ChunkedArray:
    return pc.fill_null(pc.equal(table.column("status"), "kept"), False)


def pyarrow_scan(path: Path) -> dict:
    names = pq.read_schema(path).names
    metrics = [c for c in names if c.startswith("m.") and c != "m.product_label"]
    wanted = [c for c in names if c in ("status", "stage", "reason", "reason_code", "split") or c.startswith("m.")]
    table = pq.read_table(path, columns=wanted, read_dictionary=["status", "stage", "reason_code", "split", "m.product_label"])
    out = {"status": pc.value_counts(table.column("status")).to_pylist()}
    group = [c for c in (*GROUP, "reason") if c in table.column_names]  # as the report: reason too (older manifests have no code)
    not_kept = table.filter(pc.invert(kept_mask(table)))
    plain = pa.table({c: pc.cast(not_kept.column(c), pa.string()) for c in group})
    out["funnel"] = plain.group_by(group).aggregate([([], "count_all")]).num_rows
    kept = kept_mask(table)
    for name in metrics:
        values = table.column(name).filter(kept).drop_null().to_numpy().astype(np.float64)
        if values.size:
            out[name] = (values.min(), values.max(), values.mean(), np.median(values), np.histogram(values, 20)[0])
    out["labels"] = pc.value_counts(table.column("m.product_label").filter(kept)).to_pylist()
    return out


def duckdb_scan(path: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    names = pq.read_schema(path).names
    metrics = [c for c in names if c.startswith("m.") and c not in ("m.product_label",)]
    src = f"read_parquet('{path}')"
    group = ", ".join(c for c in (*GROUP, "reason") if c in names)
    out = {"funnel": con.sql(f"SELECT {group}, count(*) FROM {src} WHERE status <> 'kept' GROUP BY ALL").fetchall()}
    aggregates = ", ".join(
        f'min(CAST("{c}" AS DOUBLE)), max(CAST("{c}" AS DOUBLE)), avg(CAST("{c}" AS DOUBLE)), median(CAST("{c}" AS DOUBLE))'
        for c in metrics
    )
    out["metrics"] = con.sql(f"SELECT {aggregates} FROM {src} WHERE status = 'kept'").fetchall()
    out["labels"] = con.sql(f"SELECT \"m.product_label\", count(*) FROM {src} WHERE status = 'kept' GROUP BY ALL").fetchall()
    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/report3m"))
    ap.add_argument("--repeats", type=int, default=3, help="best of N for the in-process timings")
    args = ap.parse_args()

    manifest = args.out / "manifest.parquet"
    if not manifest.exists() or pq.read_metadata(manifest).num_rows != args.rows:
        generate(args.out, args.rows)
    meta = pq.read_metadata(manifest)
    print(f"manifest: {meta.num_rows:,} rows, {meta.num_columns} columns, {manifest.stat().st_size / 1e6:.0f} MB")

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hoiforge.report", "stats", str(args.out)], check=True, capture_output=True)
    command = time.perf_counter() - t0
    print(f"hoiforge stats (fresh process, figures + page): {command:.2f} s")

    from hoiforge.report.figures import compute_figures

    figures = best_of(args.repeats, lambda: compute_figures(args.out))
    print(f"hoiforge figures in process (manifest -> figures.json): {figures:.2f} s")

    scan = best_of(args.repeats, lambda: pyarrow_scan(manifest))
    print(f"pyarrow scan (same columns, counts + per-metric stats/histograms): {scan:.2f} s")
    if importlib.util.find_spec("duckdb") is not None:
        duck = best_of(args.repeats, lambda: duckdb_scan(manifest))
        print(f"duckdb scan (same counts + per-metric aggregates): {duck:.2f} s")
    else:
        print("duckdb scan: skipped (pip install duckdb to add it)")
    print(f"figures / pyarrow scan: {figures / scan:.2f}")
    print(f"hoiforge stats / pyarrow scan: {command / scan:.2f}")


if __name__ == "__main__":
    main()
