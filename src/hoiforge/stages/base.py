"""The stage contract every stage follows (NeMo Curator's ProcessingStage, in small).

A stage is a class with a ``name``, a ``version``, a pydantic ``Params`` model (its recipe
keys), the shard ``members`` it may write, and two methods:

- ``setup()`` loads its model once per worker (actor) and must fail loudly if it cannot;
- ``process(samples)`` annotates the live samples of one batch in place: it adds to
  ``sample.ann``, ``sample.members`` and ``sample.metrics``, or calls ``sample.drop()``.

The framework (``Stage.__call__``) turns Ray Data batches into ``Sample`` objects and back,
skips samples an earlier stage dropped or failed (filters mark, they don't delete), isolates
per-sample failures (a batch that raises is retried one sample at a time so only the culprit
fails), and records backend, version and time per image on every sample it touched.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from hoiforge.datasets.images import decode_rgb

OK, DROPPED, FAILED = "ok", "dropped", "failed"

# Columns of a Ray Data batch between stages. Member columns are "member:<ext>".
BASE_COLUMNS = ("key", "index", "uri", "member", "image", "status", "stage", "reason", "ann", "metrics")
MEMBER_PREFIX = "member:"


class Resources(BaseModel):
    """How a stage runs on Ray. Model stages are actor pools; cheap stages are tasks."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(16, ge=1)
    concurrency: int | None = Field(None, ge=1, description="actors in the pool; default: sized from the cluster")
    num_gpus: float = Field(0, ge=0)
    num_cpus: float | None = Field(None, gt=0, description="per task/actor; default: sized from the cluster")
    custom: dict[str, float] = Field(default_factory=dict, description="Ray custom resources, e.g. {gpu_node: 1} to pin a stage to nodes")


class StageParams(BaseModel):
    """Recipe keys of a stage. Subclasses add theirs; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    backend: str | None = None
    resources: Resources = Field(default_factory=Resources)


@dataclass
class Sample:
    """One input on its way through the stages."""

    key: str  # input key: uri, or "uri::member" for a member of a tar
    index: int  # position in the run's saved input listing: the tie-breaker for duplicates
    uri: str
    member: str | None
    image: bytes | None
    status: str = OK
    stage: str | None = None
    reason: str | None = None
    ann: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    members: dict[str, bytes | None] = field(default_factory=dict)
    _rgb: np.ndarray | None = field(default=None, repr=False)

    @property
    def live(self) -> bool:
        return self.status == OK

    def rgb(self) -> np.ndarray:
        """The image as RGB uint8 HxWx3, decoded once per stage."""
        if self._rgb is None:
            assert self.image is not None, f"{self.key}: no image bytes (status {self.status})"
            self._rgb = decode_rgb(self.image)
        return self._rgb

    def set_image(self, data: bytes, rgb: np.ndarray | None = None) -> None:
        """Replace the image bytes (cleanup, re-encode) and the cached pixels with them."""
        self.image, self._rgb = data, rgb

    def drop(self, stage: str, reason: str) -> None:
        self.status, self.stage, self.reason = DROPPED, stage, reason
        self.image, self._rgb = None, None  # the runner frees dropped bytes

    def fail(self, stage: str, reason: str) -> None:
        self.status, self.stage, self.reason = FAILED, stage, reason
        self.image, self._rgb = None, None


class Stage:
    """Base class of all stages. See the module docstring for the contract."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    Params: ClassVar[type[StageParams]] = StageParams
    members: ClassVar[tuple[str, ...]] = ()
    uses_model: ClassVar[bool] = False  # True: runs as an actor pool, setup() once per actor
    default_batch_size: ClassVar[int] = 16

    def __init__(self, params: StageParams):
        self.params = params
        self._ready = False

    # -- what subclasses implement -------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return self.params.backend or "builtin"

    def preflight(self) -> None:
        """Raise BackendUnavailable (with what to do) if this stage cannot run here.

        Called on the driver before Ray starts any work; must be cheap (imports, file checks).
        """

    def setup(self) -> None:
        """Load models. Called once per worker before the first batch."""

    def process(self, samples: list[Sample]) -> None:
        raise NotImplementedError

    # -- the framework ----------------------------------------------------------------------
    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not self._ready:
            self.setup()
            self._ready = True
        samples = batch_to_samples(batch)
        live = [s for s in samples if s.live]
        if live:
            started = time.perf_counter()
            self._process_isolated(live)
            per_image = (time.perf_counter() - started) / len(live)
            for s in live:
                s.metrics[f"time.{self.name}"] = round(per_image, 6)
                if s.live or s.stage == self.name:
                    s.ann.setdefault("stages", {})[self.name] = {"backend": self.backend_name, "version": self.version}
        return samples_to_batch(samples, extra_members=self.members)

    def _process_isolated(self, live: list[Sample]) -> None:
        try:
            self.process(live)
            return
        except Exception:  # noqa: BLE001 - fall back to one sample at a time to find the culprit
            if len(live) == 1:
                self._fail(live[0])
                return
        for s in live:
            snapshot = (dict(s.ann), dict(s.metrics), dict(s.members))
            try:
                self.process([s])
            except Exception:  # noqa: BLE001 - the error is this sample's reason
                s.ann, s.metrics, s.members = snapshot
                self._fail(s)

    def _fail(self, sample: Sample) -> None:
        exc = traceback.format_exc(limit=-1).strip().splitlines()
        sample.fail(self.name, f"{self.name} raised {exc[-1]}" if exc else f"{self.name} raised")


class BackendStage(Stage):
    """A model stage whose recipe picks one backend (``backend:``) from ``backends`` and gives it
    ``options:``; the backend object is ``self.model`` once ``setup()`` ran."""

    backends: ClassVar[dict[str, str]]  # backend name -> "module:Class"
    uses_model = True

    def backend_class(self) -> type:
        from hoiforge.models.base import load_backend_class

        return load_backend_class(self.backends, self.params.backend, self.name)

    def preflight(self) -> None:
        self.backend_class().check(**self.params.options)

    def setup(self) -> None:
        self.model = self.backend_class()(**self.params.options)


# -- batch <-> samples -----------------------------------------------------------------------
# Batches travel as Arrow tables with explicit types (binary for bytes, string for text), so
# that Ray never falls back to pickled Python objects and blocks from any stage concatenate.

_TYPES = {
    "key": pa.string(),
    "index": pa.int64(),
    "uri": pa.string(),
    "member": pa.string(),
    "image": pa.large_binary(),
    "status": pa.string(),
    "stage": pa.string(),
    "reason": pa.string(),
    "ann": pa.large_string(),
    "metrics": pa.string(),
}


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
            ann=json.loads(cols["ann"][i]) if cols["ann"][i] else {},
            metrics=json.loads(cols["metrics"][i]) if cols["metrics"][i] else {},
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
        "ann": [json.dumps(s.ann, separators=(",", ":")) for s in samples],
        "metrics": [json.dumps(s.metrics, separators=(",", ":")) for s in samples],
    }
    arrays = {name: pa.array(values, type=_TYPES[name]) for name, values in columns.items()}
    for m in member_names:
        arrays[MEMBER_PREFIX + m] = pa.array([s.members.get(m) if s.live else None for s in samples], type=pa.large_binary())
    return pa.table(arrays)
