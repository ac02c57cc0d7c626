"""person: keep images with 1–5 persons detected at score ≥ 0.5 (HoIHuman), boxes recorded.

Slot ``detector`` (task ``person-detector``, models/registry.py; models.base.PersonDetector):
``mediapipe`` (embedded: face + pose detectors, offline), ``yolo`` (ultralytics YOLO from a local
``.pt``; needs a torchvision that loads beside torch) and ``rtdetr`` (transformers RT-DETR or any
object detector with a "person" label, from a local directory or the HF cache).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from hoiforge.datasets.views import square_box
from hoiforge.stages.base import MetricSpec, Sample, Slot, SlotConfig, Stage, StageParams, slot


class PersonParams(StageParams):
    detector: Annotated[SlotConfig, Slot("person-detector")] = slot("mediapipe")
    min_score: float = Field(0.5, ge=0, le=1)
    min_persons: int = Field(1, ge=0)
    max_persons: int = Field(5, ge=1)
    close_view_margin: float = Field(
        0.1, ge=0, description="close-view human crop (base UNet, stage 1): the box's longer side grown by this per side"
    )

    @model_validator(mode="after")
    def _range(self) -> PersonParams:
        if self.min_persons > self.max_persons:
            raise ValueError(f"min_persons {self.min_persons} > max_persons {self.max_persons}")
        return self


class Person(Stage):
    name = "person"
    Params = PersonParams
    writes = ("persons",)
    metrics = (MetricSpec("persons", "count", "persons", "persons per image", over="all"),)
    annotations = {"persons": [{"box": [0.0], "score": 0.0, "label": "", "source": "", "close_view": [0.0]}]}
    default_batch_size = 8

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        detector = self.backends["detector"]
        # A backend that resizes its input anyway says how large it needs it (``input_size``, the
        # longer side): a JPEG is then decoded reduced, and the boxes are mapped back to full pixels.
        images = [s.rgb(getattr(detector, "input_size", None)) for s in samples]
        found = detector.detect(images)
        for s, rgb, dets in zip(samples, images, found, strict=True):
            sx, sy = s.to_full(rgb)
            if (sx, sy) != (1.0, 1.0):
                w, h = s.full_size()
                for d in dets:
                    x0, y0, x1, y1 = d.box
                    d.box = (min(w, x0 * sx), min(h, y0 * sy), min(w, x1 * sx), min(h, y1 * sy))
            persons = [d for d in dets if d.score >= p.min_score]
            persons.sort(key=lambda d: -d.score)
            s.ann["persons"] = [{**d.to_json(), "close_view": square_box(d.box, p.close_view_margin)} for d in persons]
            s.metrics["persons"] = len(persons)
            if not p.min_persons <= len(persons) <= p.max_persons:
                self.drop(
                    s,
                    "count",
                    f"{len(persons)} persons at score >= {p.min_score} (need {p.min_persons}-{p.max_persons})",
                    persons=len(persons),
                    min_score=p.min_score,
                )
