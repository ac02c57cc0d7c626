"""A test-only stage that writes a member for some samples only, as the products stage does
(``mask.png`` only where products were found): the case uniform member sets are for."""

from __future__ import annotations

import numpy as np

from hoiforge.datasets.images import encode_png
from hoiforge.stages.base import Sample, Stage, StageParams
from hoiforge.stages.products import Products


class SomeProductsParams(StageParams):
    every: int = 3  # samples whose input index is a multiple of this get a product


class SomeProducts(Stage):
    name = "some_products"
    Params = SomeProductsParams
    writes = ("products", "mask.png")
    annotations = {"products": Products.annotations["products"]}  # the products stage's form

    def process(self, samples: list[Sample]) -> None:
        for s in samples:
            s.ann["products"] = []
            if s.index % self.params.every == 0:
                h, w = s.rgb().shape[:2]
                ids = np.zeros((h, w), np.uint8)
                ids[h // 4 : h // 2, w // 4 : w // 2] = 1
                s.ann["products"] = [{"label": "box", "mask_index": 1}]
                s.members["mask.png"] = encode_png(ids)
