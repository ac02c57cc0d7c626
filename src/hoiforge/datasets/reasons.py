"""Drop and failure reasons as the manifest stores them, and their statistics.

Every not-kept row carries a stable ``reason_code`` (``<stage>.<code>``, e.g.
``resolution.short_side``), the numbers behind it as JSON in ``reason_params`` and the human
sentence in ``reason``. stats.json, the build summary and the report group by code and show the
distribution of each parameter, so 3M rows become a few dozen lines, not thousands of one-off
sentences. Pure pyarrow/numpy: the report imports this without Ray.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def reason_code(row_code: str | None, stage: str | None, reason: str | None) -> str:
    """A row's reason code; rows of manifests older than reason codes get ``<stage>.<text>``."""
    if row_code:
        return row_code
    return f"{stage or 'unknown'}.{reason_class(reason)}"


def reason_stats(manifest: pa.Table) -> dict[str, dict[str, Any]]:
    """Per reason code: status, stage, count, one example sentence, and the distribution of
    each parameter (numbers: min/median/max and a histogram; other values: the most common).

    Column-wise: rows are grouped by (code, params) before any JSON is parsed, so 3M dropped rows
    with a few hundred distinct short sides cost a few hundred parses.
    """
    columns = ["status", "stage", "reason"] + [c for c in ("reason_code", "reason_params") if c in manifest.column_names]
    not_kept = manifest.filter(pc.not_equal(manifest.column("status"), "kept")).select(columns)
    not_kept = pa.table(
        {
            c: pc.cast(col, pa.string()) if pa.types.is_dictionary(col.type) else col
            for c, col in zip(not_kept.column_names, not_kept.columns)
        }
    )
    if "reason_code" not in not_kept.column_names:
        not_kept = not_kept.append_column("reason_code", pa.nulls(not_kept.num_rows, pa.string()))
    if "reason_params" not in not_kept.column_names:
        not_kept = not_kept.append_column("reason_params", pa.nulls(not_kept.num_rows, pa.string()))
    groups = (
        not_kept.group_by(["status", "stage", "reason_code", "reason_params"], use_threads=False)
        .aggregate([([], "count_all"), ("reason", "min")])
        .to_pylist()
    )
    out: dict[str, dict[str, Any]] = {}
    values: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for g in groups:
        code = reason_code(g["reason_code"], g["stage"], g["reason_min"])
        entry = out.setdefault(code, {"status": g["status"], "stage": g["stage"], "count": 0, "example": g["reason_min"]})
        entry["count"] += g["count_all"]
        for name, value in (json.loads(g["reason_params"]) if g["reason_params"] else {}).items():
            values[code][name][json.dumps(value)] += g["count_all"]
    for code, params in values.items():
        out[code]["params"] = {name: _distribution(counter) for name, counter in params.items()}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["count"]))


def _distribution(counter: Counter, bins: int = 10) -> dict[str, Any]:
    decoded = [(json.loads(v), n) for v, n in counter.items()]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in decoded):
        return {"top": {str(v): n for v, n in sorted(decoded, key=lambda vn: -vn[1])[:10]}, "distinct": len(decoded)}
    vals = np.array([v for v, _ in decoded], dtype=np.float64)
    weights = np.array([n for _, n in decoded], dtype=np.int64)
    order = np.argsort(vals)
    vals, weights = vals[order], weights[order]
    cumulative = np.cumsum(weights)
    median = float(vals[np.searchsorted(cumulative, cumulative[-1] / 2)])
    counts, edges = np.histogram(vals, bins=min(bins, len(vals)), weights=weights)
    return {
        "min": float(vals[0]),
        "median": median,
        "max": float(vals[-1]),
        "histogram": {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]},
    }


def reason_class(reason: str | None) -> str:
    """Reasons grouped for counting: per-input details (paths, ids) cut off, numbers kept."""
    if not reason:
        return "(none)"
    return reason.split(" of /")[0].split(" of s3://")[0].split(": /")[0][:200]
