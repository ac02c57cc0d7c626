"""edges: canny edges of the product (VirtualModel's condition e, thresholds 75/100).

Inside product masks when a products stage ran before (the paper's setting); over the whole
image when the recipe says ``region: image`` (useful before product masks exist). ``edge.png`` is
at source resolution, for analysts and other trainers: the VirtualModel loader computes e itself
from its crop at training resolution (datasets.vm_sample.product_edges), as generation does.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from hoiforge.datasets.images import encode_png
from hoiforge.datasets.masks import decode_mask
from hoiforge.datasets.vm_sample import canny
from hoiforge.stages.base import MetricSpec, Sample, Stage, StageParams


class EdgesParams(StageParams):
    low: int = Field(75, ge=0, le=1000)
    high: int = Field(100, ge=0, le=1000)
    region: Literal["products", "image"] = "products"


class Edges(Stage):
    name = "edges"
    Params = EdgesParams
    writes = ("edge.png",)
    metrics = (MetricSpec("edge_fraction", "fraction", "of the image", "edge pixels"),)
    default_batch_size = 32

    def requires(self) -> tuple[str, ...]:
        # Product edges need the product masks; region "image" edges need nothing but the image.
        return ("image", "mask.png") if self.params.region == "products" else ("image",)

    def process(self, samples: list[Sample]) -> None:
        for s in samples:
            edges = canny(s.rgb(), self.params.low, self.params.high)
            if self.params.region == "products":
                mask_png = s.members.get("mask.png")
                if mask_png is None:
                    continue  # no product, no product edges
                instance_map = decode_mask(mask_png)  # 8- or 16-bit ids; an RGB decode would clip ids > 255
                edges = np.where(instance_map > 0, edges, 0).astype(np.uint8)
            s.members["edge.png"] = encode_png(edges)
            s.metrics["edge_fraction"] = round(float((edges > 0).mean()), 5)
