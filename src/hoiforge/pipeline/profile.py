"""``hoiforge build --profile``: where a build's time went, into stats.json and the report.

Two sources, because neither alone answers "why is the pipeline slower than its stages":

- **Ray Data's own stats** of the run (``Dataset.get_stats_summary()``), per operator: its span
  (first task start to last task end), busy time (the sum of its tasks' wall time), CPU time,
  tasks and rows, the operator's scheduling and back-pressure waits, and for an actor pool the
  **actor idle** time: actors x span - busy, the seconds its actors held their CPUs (or GPUs)
  without a batch to work on;
- **per image**, from the manifest columns the pipeline adapter records when profiling
  (pipeline/adapter.py): ``m.time.<stage>`` (seconds per image in each stage, always recorded),
  ``m.wait.<stage>`` (seconds the image waited in Ray's queues before the operator that starts
  with that stage) and ``m.setup.<stage>`` (one row per worker: seconds its set-up took, models
  loaded).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Ray Data operator metrics (OpRuntimeMetrics) that are waits, summed over the operator's tasks.
RAY_WAITS = {
    "task_scheduling_time_s": "scheduling_s",  # submitted, waiting for a worker / resources
    "task_submission_backpressure_time": "submission_backpressure_s",  # held back by the executor
    "task_output_backpressure_time_s": "output_backpressure_s",  # done, waiting for downstream to take output
}


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def operator_stats(summary, pools: dict[str, int], started: float | None = None) -> list[dict[str, Any]]:
    """One dict per Ray Data operator of a finished dataset, in plan order.

    ``summary``: ``Dataset.get_stats_summary()``; ``pools``: actor pool size by a substring of the
    operator name (the chain's class is named in it), for the idle time; ``started``: when the
    plan was submitted, on ``time.perf_counter()``'s clock, which Ray Data stamps its task starts
    with: each operator's start delay (worker and actor start-up). That clock is the node's
    monotonic clock, so the delays of tasks on other nodes of a cluster are only indicative.
    """
    chain = []
    node = summary
    while node is not None:
        chain.append(node)
        node = node.parents[0] if node.parents else None
    out = []
    for node in reversed(chain):
        for op in node.operators_stats:
            if op.is_sub_operator:
                continue
            span = None
            if op.earliest_start_time is not None and op.latest_end_time is not None:
                span = op.latest_end_time - op.earliest_start_time
            busy = op.wall_time.sum if op.wall_time else None
            row = {
                "operator": op.operator_name,
                "tasks": op.wall_time.count if op.wall_time else 0,
                "rows": op.output_num_rows.sum if op.output_num_rows else 0,
                "span_s": _r(span),
                "busy_s": _r(busy),
                "cpu_s": _r(op.cpu_time.sum if op.cpu_time else None),
                "task_wall_mean_s": _r(op.wall_time.mean if op.wall_time else None),
            }
            if started is not None and op.earliest_start_time is not None:
                row["start_delay_s"] = _r(op.earliest_start_time - started)
                row["end_s"] = _r(op.latest_end_time - started) if op.latest_end_time is not None else None
            extra = node.extra_metrics or {}
            for key, name in RAY_WAITS.items():
                if isinstance(extra.get(key), int | float):
                    row[name] = _r(extra[key])
            actors = next((n for k, n in pools.items() if k in op.operator_name), None)
            if actors is not None and span is not None and busy is not None:
                row["actors"] = actors
                row["actor_idle_s"] = _r(max(0.0, actors * span - busy))
                row["actor_utilisation"] = _r(busy / (actors * span), 3) if span > 0 else None
            out.append(row)
    return out


def _dist(values: np.ndarray) -> dict[str, Any]:
    return {
        "count": int(values.size),
        "mean": _r(values.mean()),
        "p50": _r(np.percentile(values, 50)),
        "p95": _r(np.percentile(values, 95)),
        "max": _r(values.max()),
        "total": _r(values.sum(), 3),
    }


def _values(table: pa.Table, name: str) -> np.ndarray:
    col = pc.drop_null(table.column(name))
    return np.asarray(col.to_numpy() if col.num_chunks else np.empty(0), dtype=np.float64)


def manifest_profile(manifest: pa.Table) -> dict[str, Any]:
    """Per-stage time, queue waits and set-up seconds from the manifest's profiling columns."""
    out: dict[str, dict[str, Any]] = {"stage_seconds_per_image": {}, "queue_wait_s": {}, "setup_s": {}}
    for col in manifest.column_names:
        for prefix, key in (("m.time.", "stage_seconds_per_image"), ("m.wait.", "queue_wait_s"), ("m.setup.", "setup_s")):
            if col.startswith(prefix):
                values = _values(manifest, col)
                if values.size:
                    out[key][col[len(prefix) :]] = _dist(values)
    for d in out["setup_s"].values():  # one row per worker that set the stage up
        d["workers"] = d.pop("count")
    return out
