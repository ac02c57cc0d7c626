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
        ensure_ready(self.stage)
        samples = run_samples(self.stage, batch_to_samples(batch))
        return samples_to_batch(samples, extra_members=self.stage.members)


def ensure_ready(stage: Stage) -> float:
    """Set the stage up if it is not yet; returns the seconds that took (0 when it was ready)."""
    if stage.ready:
        return 0.0
    started = time.perf_counter()
    stage.setup()
    stage.ready = True
    return time.perf_counter() - started


class ChainAdapter:
    """Several stages in one Ray task or actor: the samples stay Python objects from the first
    stage to the last, so the block is converted from and to Arrow once (not once per stage) and
    the decoded pixels a stage cached (``Sample.rgb``) serve the next stage without decoding the
    bytes again. Each stage still sees its own batch size, skips dropped samples, isolates its
    failures and times itself (``run_samples``).

    ``read``: the read step (listing rows -> bytes) run first, in the same worker, so source
    bytes are not put in the object store only to be fetched by the next operator.
    ``profile``: record in every sample how long it waited in Ray's queues before this chain
    (``wait.<first stage>``) and, once per worker, the set-up seconds (``setup.<stage>``);
    ``last``: no chain follows, so the samples carry no hand-over time stamp.
    """

    def __init__(self, stages: list[Stage] | list[tuple[type[Stage], StageParams]], read=None, profile: bool = False, last: bool = True):
        self.stages = [s if isinstance(s, Stage) else s[0](s[1]) for s in stages]
        self.read, self.profile, self.last = read, profile, last
        self.extra_members = tuple(m for s in self.stages for m in s.members)
        self._setup_reported = False

    def __call__(self, batch: pa.Table | dict[str, Any]) -> pa.Table:
        arrived = time.time()
        setup = {s.name: ensure_ready(s) for s in self.stages}
        if self.read is not None:
            batch = self.read(batch if isinstance(batch, pa.Table) else pa.table(batch))
        samples = batch_to_samples(batch)
        if self.profile:
            record_waits(samples, self.stages[0].name, arrived)
            if not self._setup_reported and samples:
                # Once per worker: stats sum these over the manifest (total) and count them (workers).
                for name, seconds in setup.items():
                    samples[0].metrics[f"setup.{name}"] = round(seconds, 4)
                self._setup_reported = True
        for stage in self.stages:
            size = stage_batch_size(stage)
            live = [s for s in samples if s.live]
            for i in range(0, len(live), size):
                run_samples(stage, live[i : i + size])
        if self.profile and not self.last:  # the next chain turns it into its wait
            done = round(time.time(), 4)
            for s in samples:
                s.metrics["_left"] = done
        return samples_to_batch(samples, extra_members=self.extra_members)


def chain_class(name: str) -> type[ChainAdapter]:
    """A ChainAdapter subclass named ``name`` (e.g. "decode+person"): Ray Data names an operator
    after its class, so the progress bars and the profile say which stages each one runs."""
    return type(name, (ChainAdapter,), {"__module__": __name__, "__qualname__": name})


def stage_batch_size(stage: Stage) -> int:
    r = stage.params.resources
    return r.batch_size if "batch_size" in r.model_fields_set else stage.default_batch_size


def record_waits(samples: list[Sample], stage: str, arrived: float) -> None:
    """Seconds each sample spent between the previous chain's end and this one's start: Ray's
    queues, object transfer and the wait for a free worker (``wait.<stage>``)."""
    for s in samples:
        left = s.metrics.pop("_left", None)
        if left is not None:
            s.metrics[f"wait.{stage}"] = round(max(0.0, arrived - left), 4)


def run_stage(stage: Stage, samples: list[Sample]) -> list[Sample]:
    """Run a stage as the pipeline does (Arrow batch in, Arrow batch out): tests and tools."""
    return batch_to_samples(StageAdapter(stage)(samples_to_batch(samples)))
