"""The stage contract every stage follows (NeMo Curator's ProcessingStage, in small). Pure Python.

A stage is a small class that declares:

- ``name``, ``version`` and ``Params``: its recipe keys, a pydantic model with ``extra="forbid"``;
- its **backend slots**: fields of ``Params`` annotated with ``Slot(task)``, each filled in a recipe
  with ``{backend: NAME, options: {...}}`` (or just ``NAME``). The options are validated against
  the backend's own typed options (models/registry.py) when the recipe is parsed;
- what it **reads** and **writes**: annotation keys and shard members from the contract's
  vocabulary (datasets/contract.py). ``parse_recipe`` checks that every read has a writer before
  it, and ``validate`` and the viewer use the writes;
- ``process(samples)``: annotate the live samples of one batch in place (``sample.ann``,
  ``sample.members``, ``sample.metrics``), or ``self.drop(sample, code, text, **params)``.

The base class does, for every slot: the driver-side preflight (``preflight``), loading once per
worker (``setup``), provenance (backend, package version, options hash) and ``teardown``. How a
stage runs is derived, not claimed: as an actor pool when one of its backends loads a model or
it asks for a GPU, else as plain tasks. Turning Ray batches into samples, skipping dropped
samples, isolating failures and timing live in pipeline/adapter.py: nothing here imports Ray.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from hoiforge.datasets.contract import is_member
from hoiforge.datasets.images import decode_rgb, image_size
from hoiforge.models import registry

OK, DROPPED, FAILED = "ok", "dropped", "failed"


class RecipeDeprecation(FutureWarning):
    """An old recipe form that still works for one release; the message says how to write it now."""


class Resources(BaseModel):
    """How a stage runs on Ray. Model stages are actor pools; cheap stages are tasks."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(16, ge=1)
    concurrency: int | None = Field(None, ge=1, description="actors in the pool; default: sized from the cluster")
    num_gpus: float = Field(0, ge=0)
    num_cpus: float | None = Field(None, gt=0, description="per task/actor; default: sized from the cluster")
    custom: dict[str, float] = Field(default_factory=dict, description="Ray custom resources, e.g. {gpu_node: 1} to pin a stage to nodes")


@dataclass(frozen=True)
class Slot:
    """Annotation marker of a backend slot field: which task its backend performs."""

    task: str


class SlotConfig(BaseModel):
    """A recipe's choice for one backend slot: ``{backend: NAME, options: {...}}`` (or ``NAME``)."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    options: dict[str, Any] = Field(default_factory=dict)
    _typed: registry.BackendOptions | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"backend": data} if isinstance(data, str) else data

    def resolve(self, task: str) -> tuple[registry.Backend, registry.BackendOptions]:
        """The registered backend and its validated options; ValueError saying what is wrong."""
        try:
            b = registry.backend(task, self.backend)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        if self._typed is None or type(self._typed) is not b.options:
            self._typed = registry.validate_options(b, self.options)
        return b, self._typed

    def options_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.options, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _accepts(task: str, backend: str | None, option: str) -> bool:
    try:
        return option in registry.backend(task, backend or "").options.model_fields
    except KeyError:
        return True  # an unknown backend is reported by the slot's own validation


def slot(default: str | None) -> Any:
    """A slot field's default: that backend with no options, or None for an optional slot."""
    return Field(default_factory=lambda: SlotConfig(backend=default)) if default else None


class StageParams(BaseModel):
    """Recipe keys of a stage. Subclasses add theirs and their slots; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    resources: Resources = Field(default_factory=Resources)

    # Old recipe forms (before backend slots), migrated with a RecipeDeprecation warning:
    # old key -> slot it configures. "backend"/"options" go to the stage's first slot.
    _legacy_options: ClassVar[dict[str, str]] = {}
    # Optional slots (no default backend): the backend an old-form options key implied.
    _legacy_backends: ClassVar[dict[str, str]] = {}

    @classmethod
    def slots(cls) -> dict[str, Slot]:
        return {name: m for name, f in cls.model_fields.items() for m in f.metadata if isinstance(m, Slot)}

    @model_validator(mode="before")
    @classmethod
    def _migrate_old_form(cls, data: Any) -> Any:
        slots = cls.slots()
        if not isinstance(data, dict) or not slots:
            return data
        first = next(iter(slots))
        legacy = {"backend": first, "options": first, **{f"{s}_options": s for s in slots}, **cls._legacy_options}
        data, moved = dict(data), []
        for old, target in legacy.items():
            if old not in data or old in cls.model_fields:
                continue
            value = data.pop(old)
            current = data.get(target)
            cfg = {"backend": current} if isinstance(current, str) else dict(current or {})
            if old == "backend":
                cfg["backend"] = value
            else:
                default = cls.model_fields[target].get_default(call_default_factory=True)
                cfg.setdefault("backend", default.backend if default is not None else cls._legacy_backends.get(target))
                options = value if old == "options" or old.endswith("_options") else {old: value}
                if old in cls._legacy_options and not _accepts(slots[target].task, cfg["backend"], old):
                    moved.append(f"{old}: ignored (backend {cfg['backend']!r} has no such option)")
                    data[target] = cfg
                    continue
                cfg["options"] = {**cfg.get("options", {}), **options}
            data[target] = cfg
            moved.append(f"{old}: -> {target}: {{{'backend' if old == 'backend' else 'options'}: ...}}")
        if moved:
            warnings.warn(
                f"stage {data.get('stage')!r}: old recipe form ({'; '.join(moved)}); write each backend slot as "
                f"'<slot>: {{backend: NAME, options: {{...}}}}' (the old keys are accepted until hoiforge 0.3)",
                RecipeDeprecation,
                stacklevel=2,
            )
        return data

    @field_validator("*", mode="after")
    @classmethod
    def _check_slot(cls, value: Any, info) -> Any:
        marker = next((m for m in cls.model_fields[info.field_name].metadata if isinstance(m, Slot)), None)
        if marker is not None and value is not None:
            value.resolve(marker.task)
        return value


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
    reason: str | None = None  # the human sentence
    reason_code: str | None = None  # stable "<stage>.<code>", what stats and the report group by
    reason_params: dict[str, Any] = field(default_factory=dict)  # the numbers behind the sentence
    ann: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    members: dict[str, bytes | None] = field(default_factory=dict)
    _rgb: np.ndarray | None = field(default=None, repr=False)
    _reduced: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def live(self) -> bool:
        return self.status == OK

    def rgb(self, size: int | None = None) -> np.ndarray:
        """The image as RGB uint8 HxWx3, decoded once and kept for every later stage of the same
        worker chain (pipeline/adapter.py ChainAdapter).

        ``size``: the longer side the caller needs. The bytes are then decoded at a reduced scale
        where the format allows it (JPEG DCT scaling by 1/2, 1/4 or 1/8: a fraction of a full
        decode's time and memory); the result's longer side is at least ``min(size, full)``, never
        upscaled. Full pixels already decoded are returned as they are: a resize would cost more
        than it saves. A stage that writes coordinates maps them back with ``to_full``.
        """
        if self._rgb is not None:
            return self._rgb
        assert self.image is not None, f"{self.key}: no image bytes (status {self.status})"
        if size is None:
            self._rgb = decode_rgb(self.image)
            return self._rgb
        if size not in self._reduced:
            pixels = decode_rgb(self.image, size)
            if pixels.shape[:2] == self.full_size()[::-1]:
                self._rgb = pixels  # nothing to reduce: this is the full decode, keep it as such
                return pixels
            self._reduced[size] = pixels
        return self._reduced[size]

    def full_size(self) -> tuple[int, int]:
        """(width, height) of the full image: the decode stage's record, else the header."""
        image = self.ann.get("image") or {}
        if "width" in image and "height" in image:
            return int(image["width"]), int(image["height"])
        if self._rgb is not None:
            return self._rgb.shape[1], self._rgb.shape[0]
        return image_size(self.image)

    def to_full(self, pixels: np.ndarray) -> tuple[float, float]:
        """(sx, sy): multiply x and y measured on ``pixels`` (a ``rgb(size)`` result) by these to
        get full-resolution coordinates; (1.0, 1.0) for the full image."""
        w, h = self.full_size()
        return w / pixels.shape[1], h / pixels.shape[0]

    def set_image(self, data: bytes, rgb: np.ndarray | None = None) -> None:
        """Replace the image bytes (cleanup, re-encode) and the cached pixels with them."""
        self.image, self._rgb = data, rgb
        self._reduced = {}

    def drop(self, stage: str, code: str, reason: str, **params: Any) -> None:
        self._end(DROPPED, stage, code, reason, params)

    def fail(self, stage: str, code: str, reason: str, **params: Any) -> None:
        self._end(FAILED, stage, code, reason, params)

    def _end(self, status: str, stage: str, code: str, reason: str, params: dict[str, Any]) -> None:
        self.status, self.stage, self.reason = status, stage, reason
        self.reason_code = code if "." in code else f"{stage}.{code}"
        self.reason_params = params
        self.image, self._rgb, self._reduced = None, None, {}  # the runner frees dropped bytes


class Stage:
    """Base class of all stages. See the module docstring for the contract."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    Params: ClassVar[type[StageParams]] = StageParams
    reads: ClassVar[tuple[str, ...]] = ()  # annotation keys / members that must exist before this stage
    writes: ClassVar[tuple[str, ...]] = ()  # annotation keys / members this stage adds
    # The annotation keys it writes as typed empties (datasets/schema.py): one json schema per build.
    annotations: ClassVar[dict[str, Any]] = {}
    default_batch_size: ClassVar[int] = 16

    def __init__(self, params: StageParams):
        self.params = params
        self.backends: dict[str, Any] = {}
        self.ready = False  # set by whoever called setup() (the pipeline adapter), cleared by teardown()

    # -- declarations ------------------------------------------------------------------------
    def slot_configs(self) -> dict[str, tuple[str, SlotConfig]]:
        """Slot name -> (task, the recipe's choice), for the slots this recipe fills."""
        found = {}
        for name, marker in type(self.params).slots().items():
            cfg = getattr(self.params, name)
            if cfg is not None:
                found[name] = (marker.task, cfg)
        return found

    def requires(self) -> tuple[str, ...]:
        """What must be written before this stage runs (may depend on the params)."""
        return self.reads

    def provides(self) -> tuple[str, ...]:
        """What this stage writes (may depend on the params)."""
        return self.writes

    def annotation_schema(self) -> dict[str, Any]:
        """The template of what this stage writes into the json (may depend on the params)."""
        return self.annotations

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(w for w in self.provides() if is_member(w))

    @property
    def execution(self) -> str:
        """ "actors" (a pool; models load once per actor) or "tasks"; derived, never claimed."""
        if self.params.resources.num_gpus:
            return "actors"
        loads = any(cfg.resolve(task)[0].loads_model for task, cfg in self.slot_configs().values())
        return "actors" if loads else "tasks"

    @property
    def backend_name(self) -> str:
        """The chosen backends, "+"-joined (the summary and the json say which ran)."""
        return "+".join(cfg.backend for _, cfg in self.slot_configs().values()) or "builtin"

    # -- lifecycle ---------------------------------------------------------------------------
    def preflight(self) -> None:
        """On the driver, before Ray starts any work: raise BackendUnavailable (with what to do)
        if a backend cannot run here. Cheap: imports, file checks. Stages add their own checks
        by overriding and calling super()."""
        for task, cfg in self.slot_configs().values():
            registry.check(*cfg.resolve(task))

    def setup(self) -> None:
        """Load every slot's backend. Called once per worker before the first batch."""
        for slot_name, (task, cfg) in self.slot_configs().items():
            self.backends[slot_name] = registry.instantiate(*cfg.resolve(task))

    def teardown(self) -> None:
        """Release the backends (tools and tests that run stages in-process; actors just exit)."""
        for b in self.backends.values():
            close = getattr(b, "close", None)
            if close is not None:
                close()
        self.backends.clear()
        self.ready = False

    def process(self, samples: list[Sample]) -> None:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """What ran, for the json of every sample this stage touched."""
        backends = {}
        for slot_name, (task, cfg) in self.slot_configs().items():
            b, _ = cfg.resolve(task)
            backends[slot_name] = {"backend": cfg.backend, "version": registry.package_version(b.load()), "options": cfg.options_hash()}
        return {"backend": self.backend_name, "version": self.version, **({"backends": backends} if backends else {})}

    # -- helpers for process() -------------------------------------------------------------
    def drop(self, sample: Sample, code: str, reason: str, **params: Any) -> None:
        """Filters mark, they don't delete: ``code`` is stable (grouped by stats), ``params`` its numbers."""
        sample.drop(self.name, code, reason, **params)

    def fail(self, sample: Sample, code: str, reason: str, **params: Any) -> None:
        sample.fail(self.name, code, reason, **params)
