"""Stages: one file per stage. The registry maps a recipe's ``stage:`` name to its class.

Entries are "module:Class" strings so that listing or validating a recipe never imports a
model library; a stage imports its backend inside ``setup()``/``preflight()``.
"""

from __future__ import annotations

import importlib

from hoiforge.stages.base import Sample, Stage, StageParams

REGISTRY: dict[str, str] = {
    "decode": "hoiforge.stages.decode:Decode",
    "resolution": "hoiforge.stages.resolution:Resolution",
    "neardup": "hoiforge.stages.neardup:Neardup",
    "person": "hoiforge.stages.person:Person",
    "pose": "hoiforge.stages.pose:Pose",
    "cleanup": "hoiforge.stages.cleanup:Cleanup",
    "products": "hoiforge.stages.products:Products",
    "edges": "hoiforge.stages.edges:Edges",
    "quality": "hoiforge.stages.quality:Quality",
    "caption": "hoiforge.stages.caption:Caption",
    "shoes": "hoiforge.stages.shoes:Shoes",
    "wear_labels": "hoiforge.stages.wear_labels:WearLabels",
    "precompute": "hoiforge.stages.precompute:Precompute",
}


def stage_class(name: str) -> type[Stage]:
    try:
        target = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown stage {name!r}; known stages: {known}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["REGISTRY", "Sample", "Stage", "StageParams", "stage_class"]
