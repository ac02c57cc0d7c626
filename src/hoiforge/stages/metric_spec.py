"""What a stage declares about each metric it records, so the report draws it with no code of its own.

``Stage.metrics = (MetricSpec("shoes", "count", "shoes"), MetricSpec("shoe_area", "fraction", ...))``:
the stage writes ``sample.metrics["shoes"]``, the manifest stores it as column ``m.shoes``, and the
report (report/figures.py ``declared_metrics``) draws one figure per declared metric of the
build's stages, over the kept samples (``over="all"``: every sample that has the metric, e.g. a
score a filter cut on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["count", "fraction", "score", "flag", "category"]
Plot = Literal["counts", "histogram", "categories"]
# How each kind is drawn unless the declaration says otherwise.
DEFAULT_PLOT: dict[str, Plot] = {
    "count": "counts",
    "fraction": "histogram",
    "score": "histogram",
    "flag": "categories",
    "category": "categories",
}


@dataclass(frozen=True)
class MetricSpec:
    name: str  # the sample.metrics key; manifest column m.<name>
    kind: Kind  # count: integer per sample; fraction: 0..1; score: a real number; flag: true/false; category: a label
    unit: str = ""  # what one unit is, for the axis ("persons", "pixels", "words")
    title: str = ""  # the figure's title (default: the name)
    plot: Plot | None = None  # counts (bar per value), histogram, categories (bar per label); default by kind
    range: tuple[float, float] | None = None  # fixed histogram range (fractions: 0..1); default: the data's
    over: Literal["kept", "all"] = "kept"

    @property
    def column(self) -> str:
        return f"m.{self.name}"

    @property
    def how(self) -> Plot:
        return self.plot or DEFAULT_PLOT[self.kind]

    @property
    def bins_range(self) -> tuple[float, float] | None:
        return self.range if self.range is not None else ((0.0, 1.0) if self.kind == "fraction" else None)
