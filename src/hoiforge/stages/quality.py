"""quality: aesthetic filter (HoIHuman keeps LAION aesthetic rating >= 6) or a technical-quality filter.

Slot ``scorer`` (task ``quality-scorer``), each backend with its own threshold key:

- ``laion-aesthetic`` (paper-grade): LAION improved aesthetic predictor on CLIP ViT-L/14.
  Writes ``ann["aesthetic"] = {score, backend, model}``, metric ``aesthetic``; drops below ``min_aesthetic``.
  options: ``clip_model`` (local dir or cached hub id), ``mlp_weights`` (.pth/.safetensors), ``device``, ``dtype``.
- ``brisque`` (embedded): BRISQUE technical quality, lower is better, NOT an aesthetic score.
  Writes ``ann["quality"] = {brisque, backend}``, metric ``brisque``; drops above ``max_brisque``.

Without a threshold the stage only annotates. Run it after the cheap filters: it costs a model pass.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from hoiforge.stages.base import MetricSpec, Sample, Slot, SlotConfig, Stage, StageParams, slot


class QualityParams(StageParams):
    scorer: Annotated[SlotConfig, Slot("quality-scorer")] = slot("brisque")
    min_aesthetic: float | None = Field(None, description="laion-aesthetic: keep score >= this (paper: 6)")
    max_brisque: float | None = Field(None, ge=0, description="brisque: keep score <= this (lower is better)")

    @model_validator(mode="after")
    def _threshold_matches_backend(self) -> QualityParams:
        backend = self.scorer.backend
        if self.min_aesthetic is not None and backend != "laion-aesthetic":
            raise ValueError(f"min_aesthetic needs scorer laion-aesthetic (scorer {backend} is not an aesthetic score)")
        if self.max_brisque is not None and backend != "brisque":
            raise ValueError("max_brisque needs scorer brisque")
        return self


class Quality(Stage):
    name = "quality"
    Params = QualityParams
    writes = ("quality", "aesthetic")
    metrics = (
        MetricSpec("aesthetic", "score", "LAION aesthetic (0-10)", "aesthetic score", range=(0, 10), over="all"),
        MetricSpec("brisque", "score", "BRISQUE (lower is better)", "BRISQUE", range=(0, 150), over="all"),
    )
    annotations = {"quality": {"brisque": 0.0, "backend": ""}, "aesthetic": {"score": 0.0, "backend": "", "model": ""}}
    default_batch_size = 32

    def provides(self) -> tuple[str, ...]:
        return ("aesthetic",) if self.params.scorer.backend == "laion-aesthetic" else ("quality",)

    def annotation_schema(self) -> dict:
        return {k: v for k, v in self.annotations.items() if k in self.provides()}

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        scorer = self.backends["scorer"]
        scores = scorer.score([s.rgb() for s in samples])
        for s, score in zip(samples, scores, strict=True):
            score = round(score, 4)
            if p.scorer.backend == "laion-aesthetic":
                s.ann["aesthetic"] = {"score": score, "backend": p.scorer.backend, "model": scorer.model_id}
                s.metrics["aesthetic"] = score
                if p.min_aesthetic is not None and score < p.min_aesthetic:
                    self.drop(s, "aesthetic", f"aesthetic {score:.2f} < {p.min_aesthetic}", score=score, min=p.min_aesthetic)
            else:
                s.ann["quality"] = {"brisque": score, "backend": p.scorer.backend}
                s.metrics["brisque"] = score
                if p.max_brisque is not None and score > p.max_brisque:
                    self.drop(
                        s,
                        "brisque",
                        f"brisque {score:.1f} > {p.max_brisque} (technical quality, lower is better)",
                        score=score,
                        max=p.max_brisque,
                    )
