"""The Ray Data adapter of the stage contract (NeMo Curator's adapter, datatrove's executor role).

Stages are pure Python (stages/base.py). This module is what runs them inside a Ray Data plan:

- Arrow batch <-> ``Sample`` objects (explicit Arrow types, so Ray never falls back to pickled
  Python objects and blocks from any stage concatenate);
- ``run_samples``: skip samples an earlier stage dropped or failed (filters mark, they don't
  delete), isolate per-sample failures (a batch that raises is retried one sample at a time so
  only the culprit fails, with reason code ``<stage>.error``), time per image, and record the
  stage's provenance on every sample it touched;
- ``StageAdapter``: the callable Ray maps over blocks, as a task or as an actor class that sets
  the stage up once per actor.
"""

from __future__ import annotations

import json
import time
import traceback
from typing import Any

import pyarrow as pa

from hoiforge.stages.base import OK, Sample, Stage, StageParams

# Columns of a Ray Data batch between stages. Member columns are "member:<ext>".
BASE_COLUMNS = ("key", "index", "uri", "member", "image", "status", "stage", "reason", "reason_code", "reason_params", "ann", "metrics")
MEMBER_PREFIX = "member:"

_TYPES = {
    "key": pa.string(),
    "index": pa.int64(),
    "uri": pa.string(),
    "member": pa.string(),
    "image": pa.large_binary(),
    "status": pa.string(),
    "stage": pa.string(),
    "reason": pa.string(),
    "reason_code": pa.string(),
    "reason_params": pa.string(),
    "ann": pa.large_string(),
    "metrics": pa.string(),
}


def _json(text: str | None) -> dict:
    return json.loads(text) if text else {}


def batch_to_samples(batch: pa.Table | dict[str, Any]) -> list[Sample]:
    if isinstance(batch, pa.Table):
        cols = {name: batch.column(name).to_pylist() for name in batch.column_names}
    else:
        cols = {name: list(values) for name, values in batch.items()}
    n = len(cols["key"])
    member_cols = [c for c in cols if c.startswith(MEMBER_PREFIX)]
    for name in BASE_COLUMNS:
        cols.setdefault(name, [None] * n)
    return [
        Sample(
            key=str(cols["key"][i]),
            index=int(cols["index"][i]),
            uri=str(cols["uri"][i]),
            member=cols["member"][i] or None,
            image=cols["image"][i],
            status=str(cols["status"][i] or OK),
            stage=cols["stage"][i] or None,
            reason=cols["reason"][i] or None,
            reason_code=cols["reason_code"][i] or None,
            reason_params=_json(cols["reason_params"][i]),
            ann=_json(cols["ann"][i]),
            metrics=_json(cols["metrics"][i]),
            members={c[len(MEMBER_PREFIX) :]: cols[c][i] for c in member_cols},
        )
        for i in range(n)
    ]


def samples_to_batch(samples: list[Sample], extra_members: tuple[str, ...] = ()) -> pa.Table:
    member_names = sorted({m for s in samples for m in s.members} | set(extra_members))
    columns = {
        "key": [s.key for s in samples],
        "index": [s.index for s in samples],
        "uri": [s.uri for s in samples],
        "member": [s.member for s in samples],
        "image": [s.image if s.live else None for s in samples],
        "status": [s.status for s in samples],
        "stage": [s.stage for s in samples],
        "reason": [s.reason for s in samples],
        "reason_code": [s.reason_code for s in samples],
        "reason_params": [json.dumps(s.reason_params, separators=(",", ":"), default=str) if s.reason_params else None for s in samples],
        "ann": [json.dumps(s.ann, separators=(",", ":")) for s in samples],
        "metrics": [json.dumps(s.metrics, separators=(",", ":")) for s in samples],
    }
    arrays = {name: pa.array(values, type=_TYPES[name]) for name, values in columns.items()}
    for m in member_names:
        arrays[MEMBER_PREFIX + m] = pa.array([s.members.get(m) if s.live else None for s in samples], type=pa.large_binary())
    return pa.table(arrays)


def run_samples(stage: Stage, samples: list[Sample]) -> list[Sample]:
    """Process the live samples of a batch: isolated failures, time per image, provenance."""
    live = [s for s in samples if s.live]
    if not live:
        return samples
    started = time.perf_counter()
    _process_isolated(stage, live)
    per_image = (time.perf_counter() - started) / len(live)
    provenance = stage.provenance()
    for s in live:
        s.metrics[f"time.{stage.name}"] = round(per_image, 6)
        if s.live or s.stage == stage.name:
            s.ann.setdefault("stages", {})[stage.name] = provenance
    return samples


def _process_isolated(stage: Stage, live: list[Sample]) -> None:
    try:
        stage.process(live)
        return
    except Exception:  # noqa: BLE001 - fall back to one sample at a time to find the culprit
        if len(live) == 1:
            _fail(stage, live[0])
            return
    for s in live:
        snapshot = (dict(s.ann), dict(s.metrics), dict(s.members))
        try:
            stage.process([s])
        except Exception:  # noqa: BLE001 - the error is this sample's reason
            s.ann, s.metrics, s.members = snapshot
            _fail(stage, s)


def _fail(stage: Stage, sample: Sample) -> None:
    lines = traceback.format_exc(limit=-1).strip().splitlines()
    last = lines[-1] if lines else "error"
    sample.fail(stage.name, "error", f"{stage.name} raised {last}", exception=last.split(":")[0])


class StageAdapter:
    """What Ray Data maps over blocks: ``StageAdapter(stage)`` for tasks, or the class with
    ``fn_constructor_args=(stage_class, params)`` for an actor pool (set up once per actor)."""

    def __init__(self, stage: Stage | type[Stage], params: StageParams | None = None):
        self.stage = stage if isinstance(stage, Stage) else stage(params)

    def __call__(self, batch: pa.Table | dict[str, Any]) -> pa.Table:
        # Set up once per stage object: an actor keeps its models for every batch, and a tool
        # calling run_stage repeatedly on one stage does not reload them. No teardown here: a
        # worker's models go with its process (closing mediapipe graphs from a finaliser can hang).
        if not self.stage.ready:
            self.stage.setup()
            self.stage.ready = True
        samples = run_samples(self.stage, batch_to_samples(batch))
        return samples_to_batch(samples, extra_members=self.stage.members)


def run_stage(stage: Stage, samples: list[Sample]) -> list[Sample]:
    """Run a stage as the pipeline does (Arrow batch in, Arrow batch out): tests and tools."""
    return batch_to_samples(StageAdapter(stage)(samples_to_batch(samples)))
