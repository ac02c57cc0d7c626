"""Every figure of the dataset report as a JSON-able dict, computed from ``manifest.parquet``.

Column-wise only (pyarrow.compute group-bys, numpy histograms over whole columns): the report
must stay fast on manifests of millions of rows, so no Python loop ever runs per row. Loops
run over distinct values (stages, reasons, labels), of which there are few.

Every ``m.*`` metric column is optional: a figure whose columns a build did not record is
reported as absent (``{"available": false}``), never invented.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hoiforge.datasets import keypoints as K
from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.reasons import reason_code, reason_stats

FIGURES_VERSION = 1

# Columns the report reads; everything else in the manifest (keys, uris, hashes) is left on disk.
BASE_COLUMNS = ("status", "stage", "reason", "reason_code", "reason_params", "split")
# Few distinct values: dictionary-encode. Not "reason": dedup reasons are one per row, and
# dictionary-decoding a near-unique column costs more than it saves (measured on 3M rows).
STRING_COLUMNS = ("status", "stage", "reason_code", "split", "m.product_label")
# Stages that are not recipe stages: reading comes before every stage, dedup after them all.
BEFORE_STAGES, AFTER_STAGES = ("read",), ("dedup",)
# Keypoints per part, to turn "visible points per person" into a visible fraction.
PART_SIZES = {part: len(idx) for part, idx in K.PARTS.items()}


def load_manifest(out: str | Path) -> pa.Table:
    """The manifest columns the figures need, strings dictionary-encoded (cheap group-bys)."""
    path = OutLayout(out).manifest
    names = pq.read_schema(path).names
    wanted = [c for c in names if c in BASE_COLUMNS or c.startswith("m.")]
    return pq.read_table(path, columns=wanted, read_dictionary=[c for c in STRING_COLUMNS if c in wanted])


def load_shardlist(out: str | Path) -> list[dict[str, Any]]:
    path = OutLayout(out).index
    return json.loads(path.read_text())["shardlist"] if path.exists() else []


def recipe_stage_order(out: str | Path) -> list[str]:
    path = OutLayout(out).recipe
    if not path.exists():
        return []
    return [s["stage"] for s in json.loads(path.read_text()).get("stages", [])]


def compute_figures(out: str | Path, table: pa.Table | None = None) -> dict[str, Any]:
    """All figures of one build output directory."""
    table = load_manifest(out) if table is None else table
    kept = pc.equal(table.column("status"), "kept")
    kept = pc.fill_null(kept, False)
    shardlist = load_shardlist(out)
    return {
        "version": FIGURES_VERSION,
        "out": str(Path(out).resolve()),
        "totals": totals(table),
        "funnel": funnel(table, recipe_stage_order(out)),
        "reasons": reason_stats(table),
        "resolution": resolution(table, kept),
        "persons": integer_counts(table, "m.persons", kept),
        "products": products(table, kept),
        "quality": quality(table, kept),
        "caption_words": histogram_figure(table, "m.caption_words", kept, bins=_int_edges(table, "m.caption_words", kept)),
        "keypoints": keypoints(table, kept),
        "text": text_regions(table, kept),
        "shards": shards(shardlist),
        "splits": splits(table, kept),
        "stage_time": stage_time(table, recipe_stage_order(out)),
        "stage_metrics": declared_metrics(table, kept, recipe_stage_order(out)),
        "profile": build_profile(out),
    }


# ---------------------------------------------------------------------------------- helpers


def _col(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    return table.column(name) if name in table.column_names else None


def _numeric(col: pa.ChunkedArray, mask: pa.ChunkedArray | None = None) -> np.ndarray:
    """The non-null values of a numeric column (optionally only where ``mask``), as float64."""
    if mask is not None:
        col = col.filter(mask)
    col = pc.drop_null(col)
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    values = np.asarray(col.to_numpy() if col.num_chunks else np.empty(0), dtype=np.float64)
    # A NaN score would poison min/mean and make figures.json invalid JSON: count only real numbers.
    return values if np.isfinite(values).all() else values[np.isfinite(values)]


def _value_counts(col: pa.ChunkedArray) -> dict[str, int]:
    """Counts of each distinct value (nulls under "(none)"), most frequent first."""
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, col.type.value_type)
    vc = pc.value_counts(col)
    values, counts = vc.field("values").to_pylist(), vc.field("counts").to_pylist()
    pairs = sorted(zip(["(none)" if v is None else str(v) for v in values], counts), key=lambda p: (-p[1], p[0]))
    return dict(pairs)


def summary(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"count": 0}
    # Arrow's exact quantile is ~10x faster than np.quantile on millions of values (no full partition copy).
    q = pc.quantile(pa.array(values), q=[0.05, 0.5, 0.95]).to_pylist()
    return {
        "count": int(values.size),
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "p05": float(q[0]),
        "median": float(q[1]),
        "p95": float(q[2]),
    }


def histogram(values: np.ndarray, bins: np.ndarray | int = 20) -> dict[str, Any]:
    """Counts per bin: ``edges`` has one more entry than ``counts``; the last bin is closed.

    Values outside fixed edges land in the first/last bin (a BRISQUE of 180 counts as "≥ 150"),
    so the counts always add up to the number of values.
    """
    if values.size == 0:
        return {"edges": [], "counts": []}
    if isinstance(bins, int):
        lo, hi = float(values.min()), float(values.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    else:
        values = np.clip(values, bins[0], bins[-1])
    edges = np.asarray(bins, dtype=np.float64)
    width = edges[1] - edges[0]
    if np.allclose(np.diff(edges), width):
        # Equal-width bins: one division and a bincount (np.histogram sorts for explicit edges).
        which = np.clip(((values - edges[0]) / width).astype(np.int64), 0, len(edges) - 2)
        # Rounding can put a value one bin off at an edge: fix against the edges themselves.
        which -= values < edges[which]
        which += (values >= edges[which + 1]) & (which < len(edges) - 2)
        counts = np.bincount(which, minlength=len(edges) - 1)
    else:
        counts, _ = np.histogram(values, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def histogram_figure(table: pa.Table, name: str, kept: pa.ChunkedArray, bins: np.ndarray | int = 20) -> dict[str, Any]:
    """Histogram + summary of one metric over the kept samples."""
    col = _col(table, name)
    if col is None:
        return {"available": False, "column": name}
    values = _numeric(col, kept)
    return {"available": True, "column": name, "summary": summary(values), "histogram": histogram(values, bins)}


def _int_edges(table: pa.Table, name: str, kept: pa.ChunkedArray, max_bins: int = 40) -> np.ndarray | int:
    """Bin edges for an integer metric: one bin per value when few, else ~max_bins wide bins."""
    col = _col(table, name)
    if col is None:
        return max_bins
    mm = pc.min_max(col.filter(kept)).as_py()
    if mm["min"] is None:
        return max_bins
    lo, hi = int(mm["min"]), int(mm["max"])
    step = max(1, math.ceil((hi - lo + 1) / max_bins))
    return np.arange(lo, hi + step + 1, step) - 0.5


def integer_counts(table: pa.Table, name: str, kept: pa.ChunkedArray) -> dict[str, Any]:
    """Samples per integer value of a metric (persons per image), kept and all decoded."""
    col = _col(table, name)
    if col is None:
        return {"available": False, "column": name}
    out: dict[str, Any] = {"available": True, "column": name}
    for label, mask in (("kept", kept), ("all", None)):
        values = _numeric(col, mask).astype(np.int64)
        uniq, counts = np.unique(values, return_counts=True)
        out[label] = {str(int(u)): int(c) for u, c in zip(uniq, counts)}
    return out


# ---------------------------------------------------------------------------------- figures


def totals(table: pa.Table) -> dict[str, int]:
    counts = _value_counts(table.column("status"))
    return {"inputs": table.num_rows, **{s: counts.get(s, 0) for s in ("kept", "dropped", "failed")}}


def funnel(table: pa.Table, stage_order: list[str]) -> dict[str, Any]:
    """Inputs → the drops and failures of each stage, by reason → kept.

    Stages come in recipe order (``read`` before, ``dedup`` after); a stage that removed
    nothing still appears, so the funnel shows the whole plan.
    """
    not_kept = table.filter(pc.fill_null(pc.not_equal(table.column("status"), "kept"), True))
    columns = [c for c in ("status", "stage", "reason_code", "reason") if c in not_kept.column_names]
    grouped = (
        pa.table(
            {
                c: pc.cast(not_kept.column(c), pa.string()) if pa.types.is_dictionary(not_kept.column(c).type) else not_kept.column(c)
                for c in columns
            }
        )
        .group_by(columns)
        .aggregate([([], "count_all")])
    )
    # Grouped by reason code: the sentences carry per-input numbers, the codes do not.
    removed: dict[str, dict[str, Any]] = {}
    codes = grouped.column("reason_code").to_pylist() if "reason_code" in columns else [None] * grouped.num_rows
    for status, stage, code, reason, n in zip(
        *(grouped.column(c).to_pylist() for c in ("status", "stage")),
        codes,
        grouped.column("reason").to_pylist(),
        grouped.column("count_all").to_pylist(),
    ):
        stage = stage or "(unknown)"
        entry = removed.setdefault(stage, {"dropped": 0, "failed": 0, "reasons": {}})
        entry[status if status in ("dropped", "failed") else "failed"] += n
        key = f"{status}: {reason_code(code, stage, reason)}"
        entry["reasons"][key] = entry["reasons"].get(key, 0) + n

    seen = set(removed)
    known = set(BEFORE_STAGES) | set(stage_order) | set(AFTER_STAGES)
    order = [s for s in BEFORE_STAGES if s in seen] + stage_order + sorted(seen - known) + [s for s in AFTER_STAGES if s in seen]
    remaining = table.num_rows
    steps = []
    for stage in dict.fromkeys(order):  # keeps order, drops repeats
        entry = removed.get(stage, {"dropped": 0, "failed": 0, "reasons": {}})
        remaining -= entry["dropped"] + entry["failed"]
        reasons = dict(sorted(entry["reasons"].items(), key=lambda p: (-p[1], p[0])))
        steps.append({"stage": stage, "dropped": entry["dropped"], "failed": entry["failed"], "reasons": reasons, "remaining": remaining})
    return {"inputs": table.num_rows, "steps": steps, "kept": remaining}


def resolution(table: pa.Table, kept: pa.ChunkedArray) -> dict[str, Any]:
    """Short and long side distributions (the VirtualModel paper's Fig. 4), kept and all decoded."""
    w, h = _col(table, "m.width"), _col(table, "m.height")
    if w is None or h is None:
        return {"available": False, "column": "m.width/m.height"}
    both = pc.and_(pc.is_valid(w), pc.is_valid(h))
    sides = {}
    for label, mask in (("kept", pc.and_(both, kept)), ("all", both)):
        ws, hs = _numeric(w, mask), _numeric(h, mask)
        sides[label] = (np.minimum(ws, hs), np.maximum(ws, hs))
    # Shared bins (128 px wide) so the kept and all histograms compare bar for bar.
    top = float(sides["all"][1].max(initial=0))
    edges = np.arange(0, max(top, 1) + 128, 128, dtype=np.float64)
    out: dict[str, Any] = {"available": True}
    for label, (short, long_) in sides.items():
        out[label] = {
            "short": summary(short),
            "long": summary(long_),
            "short_hist": histogram(short, edges),
            "long_hist": histogram(long_, edges),
        }
    return out


def products(table: pa.Table, kept: pa.ChunkedArray) -> dict[str, Any]:
    """Product categories (the first detected product's label) and mask areas of kept samples."""
    label, count, area = _col(table, "m.product_label"), _col(table, "m.products"), _col(table, "m.product_area")
    if label is None and count is None and area is None:
        return {"available": False, "column": "m.product_label/m.products/m.product_area"}
    out: dict[str, Any] = {"available": True}
    if label is not None:
        labels = label.filter(kept)
        labels = pc.if_else(pc.equal(pc.cast(labels, pa.string()), ""), pa.scalar(None, pa.string()), pc.cast(labels, pa.string()))
        out["labels"] = _value_counts(labels)
    if count is not None:
        out["per_image"] = integer_counts(table, "m.products", kept)["kept"]
    if area is not None:
        values = _numeric(area, kept)
        out["area"] = {"summary": summary(values), "histogram": histogram(values, np.linspace(0, 1, 21))}
    return out


def quality(table: pa.Table, kept: pa.ChunkedArray) -> dict[str, Any]:
    """Aesthetic (0-10, higher better) and/or BRISQUE (lower better) scores, all scored rows.

    All scored rows, not only kept ones: the score threshold is a filter, and the analyst wants
    to see where it cut.
    """
    out: dict[str, Any] = {"available": False}
    for name, bins in (("m.aesthetic", np.linspace(0, 10, 41)), ("m.brisque", np.linspace(0, 150, 31))):
        col = _col(table, name)
        if col is None:
            continue
        out["available"] = True
        all_values, kept_values = _numeric(col), _numeric(col, kept)
        out[name[2:]] = {
            "column": name,
            "all": {"summary": summary(all_values), "histogram": histogram(all_values, bins)},
            "kept": {"summary": summary(kept_values), "histogram": histogram(kept_values, bins)},
        }
    return out


def keypoints(table: pa.Table, kept: pa.ChunkedArray) -> dict[str, Any]:
    """Visible keypoints per person by body part (the pose stage's m.kp_<part>), kept samples."""
    parts = {}
    for part, size in PART_SIZES.items():
        col = _col(table, f"m.kp_{part}")
        if col is None:
            continue
        values = _numeric(col, kept)
        parts[part] = {
            "keypoints": size,
            "mean_visible": float(values.mean()) if values.size else None,
            "mean_fraction": float(values.mean() / size) if values.size else None,
            "histogram": histogram(values / size, np.linspace(0, 1, 11)),
        }
    return {"available": bool(parts), "parts": parts}


def text_regions(table: pa.Table, kept: pa.ChunkedArray) -> dict[str, Any]:
    """OCR text regions found and removed per kept image (the cleanup stage)."""
    out: dict[str, Any] = {"available": False}
    for name in ("m.text_regions", "m.text_removed", "m.cleanup_fraction"):
        col = _col(table, name)
        if col is None:
            continue
        values = _numeric(col, kept)
        out["available"] = True
        out[name[2:]] = {"summary": summary(values), "total": float(values.sum())}
    return out


def shards(shardlist: list[dict[str, Any]]) -> dict[str, Any]:
    """Shard file sizes and sample counts, from the wids index."""
    if not shardlist:
        return {"available": False, "count": 0}
    sizes = np.array([s["filesize"] for s in shardlist], dtype=np.float64) / 1e6
    counts = np.array([s["nsamples"] for s in shardlist], dtype=np.float64)
    return {
        "available": True,
        "count": len(shardlist),
        "total_bytes": int(sum(s["filesize"] for s in shardlist)),
        "total_samples": int(counts.sum()),
        "megabytes": {"summary": summary(sizes), "histogram": histogram(sizes, 20)},
        "samples": {"summary": summary(counts), "histogram": histogram(counts, 20)},
    }


def splits(table: pa.Table, kept: pa.ChunkedArray) -> dict[str, int]:
    return _value_counts(table.column("split").filter(kept))


def build_profile(out: str | Path) -> dict[str, Any]:
    """``hoiforge build --profile``'s record in stats.json (pipeline/profile.py), {} without it."""
    path = OutLayout(out).stats
    try:
        return json.loads(path.read_text()).get("profile") or {}
    except (OSError, ValueError):
        return {}


def stage_time(table: pa.Table, stage_order: list[str] = ()) -> dict[str, Any]:
    """Seconds per image of each stage (over the rows it processed), in recipe order."""
    recorded = [c[len("m.time.") :] for c in table.column_names if c.startswith("m.time.")]
    rank = {s: i for i, s in enumerate(stage_order)}
    out = {}
    for stage in sorted(recorded, key=lambda s: (rank.get(s, len(rank)), s)):
        values = _numeric(table.column(f"m.time.{stage}"))
        if values.size:
            out[stage] = summary(values)
    return out


# ------------------------------------------------------------------------- declared metrics


def declared_metrics(table: pa.Table, kept: pa.ChunkedArray, stage_order: list[str]) -> list[dict[str, Any]]:
    """One figure per metric each stage of the recipe declares (``Stage.metrics``), in recipe order:
    a stage gets its figures by declaring them, with no code here."""
    from hoiforge.stages import REGISTRY, stage_class

    out = []
    for stage in stage_order:
        if stage not in REGISTRY:
            continue
        figures = [metric_figure(table, kept, spec) for spec in stage_class(stage).metrics]
        if figures:
            out.append({"stage": stage, "metrics": figures})
    return out


def metric_figure(table: pa.Table, kept: pa.ChunkedArray, spec) -> dict[str, Any]:
    """The figure of one declared metric (stages/metric_spec.py): counts per value, a histogram, or counts per label."""
    head = {"name": spec.name, "column": spec.column, "kind": spec.kind, "unit": spec.unit, "title": spec.title or spec.name}
    head |= {"plot": spec.how, "over": spec.over}
    col = _col(table, spec.column)
    if col is None:
        return {**head, "available": False}
    mask = kept if spec.over == "kept" else None
    if spec.how == "categories":
        values = col.filter(mask) if mask is not None else col
        if pa.types.is_boolean(values.type):
            values = pc.cast(values, pa.string())
        counts = _value_counts(pc.drop_null(values))
        return {**head, "available": bool(counts), "counts": counts}
    values = _numeric(col, mask)
    if spec.how == "counts":
        uniq, counts = np.unique(values.astype(np.int64), return_counts=True)
        return {**head, "available": bool(values.size), "counts": {str(int(u)): int(c) for u, c in zip(uniq, counts)}}
    if spec.bins_range is not None:
        bins: np.ndarray | int = np.linspace(*spec.bins_range, 21)
    else:
        bins = _int_edges(table, spec.column, kept if mask is not None else pc.is_valid(col)) if spec.kind == "count" else 20
    return {**head, "available": bool(values.size), "summary": summary(values), "histogram": histogram(values, bins)}
