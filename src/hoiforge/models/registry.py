"""The one backend registry: (task, backend name) -> class, and each backend's typed options.

A stage's backend slot names a task (``person-detector``, ``pose-estimator``, ...); a recipe
picks a backend for it by name and gives it ``options``. The table below maps names to
``"module:Class"`` strings, so listing or validating a recipe imports only the backends it names
(and backend modules import their heavy library inside ``__init__``).

A backend's options are its constructor's keyword arguments: ``options_model(cls)`` turns the
signature (types, defaults, ``Annotated`` pydantic constraints) into a pydantic model with
``extra="forbid"``, so a typo is caught when the recipe is parsed, and the signature stays the
single place where an option is declared. A keyword that takes a registry weight says so with
``Weights("entry", "file")`` in its annotation; ``hoiforge models`` and ``hoiforge build``
derive what a recipe needs from those markers.

Every backend class offers ``check(**options)``: a cheap classmethod (imports, files) the driver
calls before work starts, raising BackendUnavailable with what to do. ``loads_model = False``
marks backends without weights to load (GrabCut, templates, label import), whose stages can run
as plain tasks; ``package`` names the distribution whose version is recorded as provenance.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from hoiforge.errors import BackendUnavailable

# task -> backend name -> "module:Class"
BACKENDS: dict[str, dict[str, str]] = {
    "person-detector": {
        "mediapipe": "hoiforge.models.mediapipe_person:MediapipePersonDetector",
        "yolo": "hoiforge.models.ultralytics_person:UltralyticsPersonDetector",
        "rtdetr": "hoiforge.models.hf_person:HFPersonDetector",
    },
    "pose-estimator": {
        "mediapipe": "hoiforge.models.mediapipe_pose:MediapipeHolisticPose",
        "vitpose": "hoiforge.models.vitpose:VitPoseWholeBody",
        "rtmw": "hoiforge.models.rtmw_onnx:RTMWOnnxPose",
    },
    "quality-scorer": {
        "brisque": "hoiforge.models.brisque_quality:BrisqueScorer",
        "laion-aesthetic": "hoiforge.models.aesthetic:LaionAestheticScorer",
    },
    "product-detector": {
        "worn-held": "hoiforge.models.worn_held:WornHeldDetector",
        "embedded": "hoiforge.models.embedded_segment:EmbeddedProductDetector",
        "grounding-dino": "hoiforge.models.grounding_dino:GroundingDinoDetector",
    },
    "box-segmenter": {
        "embedded": "hoiforge.models.embedded_segment:EmbeddedBoxSegmenter",
        "sam": "hoiforge.models.sam:SegmentAnythingSegmenter",
        "hf-sam": "hoiforge.models.sam:HfSamSegmenter",
    },
    "text-reader": {
        "rapidocr": "hoiforge.models.ocr:RapidOCRReader",
        "paddleocr": "hoiforge.models.ocr:PaddleOCRReader",
    },
    "inpainter": {
        "telea": "hoiforge.models.inpaint:TeleaInpainter",
        "patchmatch": "hoiforge.models.inpaint:PatchMatchInpainter",
        "lama": "hoiforge.models.inpaint:LamaInpainter",
    },
    "captioner": {
        "template": "hoiforge.models.template_caption:TemplateCaptioner",
        "qwen2-vl": "hoiforge.models.vlm_caption:QwenVLCaptioner",
        "vllm": "hoiforge.models.vllm_caption:VllmCaptioner",
    },
    "translator": {
        "marian": "hoiforge.models.translate:MarianTranslator",
    },
    "shoe-segmenter": {
        "foot-grabcut": "hoiforge.models.foot_segment:FootSeededSegmenter",
    },
    "wear-segmenter": {
        "segformer": "hoiforge.models.wd_segmenter:SegformerWearSegmenter",
    },
    "vae-encoder": {
        "sd-vae": "hoiforge.models.encoders:SDVaeEncoder",
    },
    "text-encoder": {
        "clip-text": "hoiforge.models.encoders:ClipTextEncoder",
    },
    "image-encoder": {
        "dinov2": "hoiforge.models.encoders:Dinov2Encoder",
    },
}


@dataclass(frozen=True)
class Weights:
    """Annotation marker: this option takes (a path into) weights registry entry ``entry``.

    ``file`` None means the entry's folder. Left unset in a recipe, ``hoiforge build`` fills it
    with the local path of the entry (or refuses to start, naming the fetch command).
    """

    entry: str
    file: str | None = None


class BackendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


@cache
def options_model(cls: type) -> type[BackendOptions]:
    """The pydantic model of ``cls``'s constructor keywords (its recipe ``options``)."""
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            raise TypeError(f"{cls.__name__}: backend constructors take explicit keywords (their recipe options), not *args/**kwargs")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    return create_model(f"{cls.__name__}Options", __base__=BackendOptions, **fields)


def weight_fields(cls: type) -> dict[str, Weights]:
    """Option name -> its Weights marker, for the options of ``cls`` that take registry weights."""
    found = {}
    for name, field in options_model(cls).model_fields.items():
        for meta in field.metadata:
            if isinstance(meta, Weights):
                found[name] = meta
    return found


@dataclass(frozen=True)
class Backend:
    task: str
    name: str
    target: str  # "module:Class"

    def load(self) -> type:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)

    @property
    def options(self) -> type[BackendOptions]:
        return options_model(self.load())

    @property
    def loads_model(self) -> bool:
        return getattr(self.load(), "loads_model", True)


def backend(task: str, name: str) -> Backend:
    """The registered backend ``name`` for ``task``; KeyError with the choices if there is none."""
    table = BACKENDS.get(task)
    if table is None:
        raise KeyError(f"unknown backend task {task!r}; known: {', '.join(sorted(BACKENDS))}")
    if name not in table:
        raise KeyError(f"unknown backend {name!r}; choose one of: {', '.join(table)}")
    return Backend(task, name, table[name])


def all_backends() -> list[Backend]:
    return [Backend(task, name, target) for task, table in BACKENDS.items() for name, target in table.items()]


def validate_options(b: Backend, options: dict[str, Any]) -> BackendOptions:
    """The typed options; ValueError naming each bad key (and the keys this backend takes), one per line."""
    model = b.options
    try:
        return model.model_validate(options)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(options)"
            if err["type"] == "extra_forbidden":
                problems.append(f"options.{key}: unknown key (backend {b.name!r} takes: {', '.join(model.model_fields) or 'no options'})")
            elif err["type"] == "missing":
                problems.append(f"options.{key}: required by backend {b.name!r}")
            else:
                problems.append(f"options.{key}: {err['msg']} (got {err.get('input')!r})")
        raise ValueError("\n".join(problems)) from None


def instantiate(b: Backend, options: BackendOptions) -> Any:
    return b.load()(**options.model_dump())


def check(b: Backend, options: BackendOptions) -> None:
    """The backend's own preflight (packages present, weight files readable)."""
    cls = b.load()
    checker = getattr(cls, "check", None)
    if checker is None:
        raise BackendUnavailable(
            f"backend {b.name!r} ({b.target}) has no check(): every backend must say before work starts whether it runs"
        )
    checker(**options.model_dump())


def package_version(cls: type) -> str | None:
    """The installed version of the distribution a backend wraps (provenance in every sample)."""
    package = getattr(cls, "package", None)
    if not package:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
