"""A recipe's stages as objects, and what they declare together: the members every kept sample
carries and the one json template of the build (datasets/schema.py)."""

from __future__ import annotations

import json
from typing import Any

from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.schema import build_template
from hoiforge.pipeline.recipe import Recipe, parse_recipe
from hoiforge.stages import stage_class
from hoiforge.stages.base import Stage


def instantiate(recipe: Recipe) -> list[Stage]:
    # The decode stage stores the image, so it is the one that encodes it as the output asks.
    out = {"image_format": recipe.output.image_format, "image_quality": recipe.output.image_quality}
    return [stage_class(p.stage)(p.model_copy(update=out) if p.stage == "decode" else p) for p in recipe.stages]


def uniform_members(stages: list[Stage]) -> tuple[str, ...]:
    """The optional members every kept sample of the build carries: all that its stages can write
    (a sample a stage wrote nothing for gets a placeholder, datasets/placeholders.py)."""
    return tuple(sorted({m for stage in stages for m in stage.members}))


def declared_shape(layout: OutLayout) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    """(the members every sample carries, the json template) the build's recipe declares; ((), None)
    for an output without a recipe.json this version can read."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an old recipe form was reported when the build started
            stages = instantiate(parse_recipe(json.loads(layout.recipe.read_text()), str(layout.recipe)))
        return uniform_members(stages), build_template(stages)
    except Exception:  # noqa: BLE001 - received or older outputs: no declared shape to compare with
        return (), None


def declared_template(layout: OutLayout) -> dict[str, Any] | None:
    """The json template the build's recipe declares (None: no readable recipe.json)."""
    return declared_shape(layout)[1]
