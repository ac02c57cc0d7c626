"""person: keep images with 1–5 persons detected at score ≥ 0.5 (HoIHuman), boxes recorded.

Backends (PERSON_BACKENDS, "module:Class" implementing models.base.PersonDetector):
``mediapipe`` (embedded: face + pose detectors, offline), ``yolo`` (ultralytics YOLO from a local
``.pt``; needs a torchvision that loads beside torch) and ``rtdetr`` (transformers RT-DETR or any
object detector with a "person" label, from a local directory or the HF cache).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from hoiforge.stages.base import BackendStage, Sample, StageParams

PERSON_BACKENDS: dict[str, str] = {
    "mediapipe": "hoiforge.models.mediapipe_person:MediapipePersonDetector",
    "yolo": "hoiforge.models.ultralytics_person:UltralyticsPersonDetector",
    "rtdetr": "hoiforge.models.hf_person:HFPersonDetector",
}


class PersonParams(StageParams):
    backend: str = "mediapipe"
    min_score: float = Field(0.5, ge=0, le=1)
    min_persons: int = Field(1, ge=0)
    max_persons: int = Field(5, ge=1)
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the backend")

    @model_validator(mode="after")
    def _range(self) -> PersonParams:
        if self.min_persons > self.max_persons:
            raise ValueError(f"min_persons {self.min_persons} > max_persons {self.max_persons}")
        return self


class Person(BackendStage):
    name = "person"
    Params = PersonParams
    backends = PERSON_BACKENDS
    default_batch_size = 8

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        found = self.model.detect([s.rgb() for s in samples])
        for s, dets in zip(samples, found, strict=True):
            persons = [d for d in dets if d.score >= p.min_score]
            persons.sort(key=lambda d: -d.score)
            s.ann["persons"] = [d.to_json() for d in persons]
            s.metrics["persons"] = len(persons)
            if not p.min_persons <= len(persons) <= p.max_persons:
                s.drop(self.name, f"{len(persons)} persons at score >= {p.min_score} (need {p.min_persons}-{p.max_persons})")
