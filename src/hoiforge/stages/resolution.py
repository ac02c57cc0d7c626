"""resolution: keep images whose short side is at least N pixels (HoIHuman: 256)."""

from __future__ import annotations

from pydantic import Field

from hoiforge.stages.base import Sample, Stage, StageParams


class ResolutionParams(StageParams):
    min_short_side: int = Field(256, ge=1)
    max_aspect: float | None = Field(None, gt=1, description="long/short side above this drops (None: no limit)")


class Resolution(Stage):
    name = "resolution"
    Params = ResolutionParams
    reads = ("image",)
    default_batch_size = 256

    def process(self, samples: list[Sample]) -> None:
        for s in samples:
            w, h = s.ann["image"]["width"], s.ann["image"]["height"]
            short, long = min(w, h), max(w, h)
            if short < self.params.min_short_side:
                self.drop(
                    s, "short_side", f"short side {short} < {self.params.min_short_side}", short_side=short, min=self.params.min_short_side
                )
            elif self.params.max_aspect and long / short > self.params.max_aspect:
                aspect = round(long / short, 3)
                self.drop(s, "aspect", f"aspect {aspect:.2f} > {self.params.max_aspect}", aspect=aspect, max=self.params.max_aspect)
