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
  ``sample.members``, ``sample.metrics``), or ``self.drop(sample, code, text, **params)``;
- the **metrics** it records (``metrics``: name, kind, unit, how to plot; stages/metric_spec.py):
  each becomes the manifest column ``m.<name>`` and a figure of the report, with no report code;
- optionally a **finalize hook** (``settle``): a decision that needs every committed sample
  (near-duplicates), made once over the whole manifest when the build finalizes.

The base class does, for every slot: the driver-side preflight (``preflight``), loading once per
worker (``setup``), provenance (backend, package version, options hash) and ``teardown``. How a
stage runs is derived, not claimed: as an actor pool when one of its backends loads a model or
it asks for a GPU, else as plain tasks. Turning Ray batches into samples, skipping dropped
samples, isolating failures and timing live in pipeline/adapter.py: nothing here imports Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from hoiforge.datasets.contract import is_member
from hoiforge.models import registry

# A stage file imports everything it needs from here; each lives in its own module.
from hoiforge.stages.legacy import RecipeDeprecation
from hoiforge.stages.metric_spec import MetricSpec
from hoiforge.stages.params import StageParams
from hoiforge.stages.resources import Resources
from hoiforge.stages.sample import DROPPED, FAILED, OK, Sample
from hoiforge.stages.slots import Slot, SlotConfig, slot

if TYPE_CHECKING:
    import pyarrow as pa

    from hoiforge.datasets.layout import OutLayout

__all__ = [
    "DROPPED", "FAILED", "OK", "MetricSpec", "RecipeDeprecation", "Resources", "Sample", "Slot", "SlotConfig", "Stage",
    "StageParams", "slot",
]  # fmt: skip


class Stage:
    """Base class of all stages. See the module docstring for the contract."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    Params: ClassVar[type[StageParams]] = StageParams
    reads: ClassVar[tuple[str, ...]] = ()  # annotation keys / members that must exist before this stage
    writes: ClassVar[tuple[str, ...]] = ()  # annotation keys / members this stage adds
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()  # sample.metrics it records: each is drawn by the report
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

    def settle(self, manifest: pa.Table, layout: OutLayout) -> tuple[pa.Table, dict[str, set[str]]]:
        """Finalize hook, called once with the whole committed manifest when the build finalizes (again on
        every resume: a function of the committed parts alone). Returns the manifest with the rows it
        decided on changed, and per shard the sample ids to take out of it. Default: nothing to settle."""
        return manifest, {}

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
