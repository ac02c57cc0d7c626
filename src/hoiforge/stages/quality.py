"""quality: aesthetic filter (HoIHuman keeps LAION aesthetic rating >= 6) or a technical-quality filter.

Backends, each with its own threshold key:

- ``laion-aesthetic`` (paper-grade): LAION improved aesthetic predictor on CLIP ViT-L/14.
  Writes ``ann["aesthetic"] = {score, backend, model}``, metric ``aesthetic``; drops below ``min_aesthetic``.
  options: ``clip_model`` (local dir or cached hub id), ``mlp_weights`` (.pth/.safetensors), ``device``, ``dtype``.
- ``brisque`` (embedded): BRISQUE technical quality, lower is better, NOT an aesthetic score.
  Writes ``ann["quality"] = {brisque, backend}``, metric ``brisque``; drops above ``max_brisque``.

Without a threshold the stage only annotates. Run it after the cheap filters: it costs a model pass.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from hoiforge.stages.base import BackendStage, Sample, StageParams

QUALITY_BACKENDS: dict[str, str] = {
    "laion-aesthetic": "hoiforge.models.aesthetic:LaionAestheticScorer",
    "brisque": "hoiforge.models.brisque_quality:BrisqueScorer",
}


class QualityParams(StageParams):
    backend: Literal["laion-aesthetic", "brisque"] = "brisque"
    min_aesthetic: float | None = Field(None, description="laion-aesthetic: keep score >= this (paper: 6)")
    max_brisque: float | None = Field(None, ge=0, description="brisque: keep score <= this (lower is better)")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the backend")

    @model_validator(mode="after")
    def _threshold_matches_backend(self) -> QualityParams:
        if self.min_aesthetic is not None and self.backend != "laion-aesthetic":
            raise ValueError(f"min_aesthetic needs backend laion-aesthetic (backend {self.backend} is not an aesthetic score)")
        if self.max_brisque is not None and self.backend != "brisque":
            raise ValueError("max_brisque needs backend brisque")
        return self


class Quality(BackendStage):
    name = "quality"
    Params = QualityParams
    backends = QUALITY_BACKENDS
    default_batch_size = 32

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        scores = self.model.score([s.rgb() for s in samples])
        for s, score in zip(samples, scores, strict=True):
            score = round(score, 4)
            if p.backend == "laion-aesthetic":
                s.ann["aesthetic"] = {"score": score, "backend": p.backend, "model": self.model.model_id}
                s.metrics["aesthetic"] = score
                if p.min_aesthetic is not None and score < p.min_aesthetic:
                    s.drop(self.name, f"aesthetic {score:.2f} < {p.min_aesthetic}")
            else:
                s.ann["quality"] = {"brisque": score, "backend": p.backend}
                s.metrics["brisque"] = score
                if p.max_brisque is not None and score > p.max_brisque:
                    s.drop(self.name, f"brisque {score:.1f} > {p.max_brisque} (technical quality, lower is better)")
