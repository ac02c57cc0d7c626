"""Which registry weights a recipe needs, derived from its backends' typed options.

A backend option that takes weights says so in its annotation (``Weights("sam-vit-h",
"sam_vit_h_4b8939.pth")``, models/registry.py). A recipe needs an entry when a slot chooses such
a backend and leaves that option unset: an option the user set (a path or hub id of their own)
is theirs, and the backend's ``check`` judges it.

``with_weights(recipe)`` (called by ``hoiforge build`` on the driver before Ray starts) fills
every such option with the entry's local path, or raises one ``BackendUnavailable`` listing
everything missing and the ``hoiforge models fetch`` command. The filled paths travel to the
workers inside the stage params, so every node must see the same path (a shared weights root,
or the same root fetched on each node; see docs/weights.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hoiforge.errors import BackendUnavailable
from hoiforge.models import registry
from hoiforge.models.weights.registry import REGISTRY, WeightSpec, fetch_command, locate, resolve, spec, weights_root
from hoiforge.pipeline.recipe import Recipe
from hoiforge.stages.base import SlotConfig, StageParams


@dataclass(frozen=True)
class WeightNeed:
    stage: str
    slot: str
    backend: str
    option: str
    marker: registry.Weights

    @property
    def entry(self) -> WeightSpec:
        return spec(self.marker.entry)


def stage_needs(params: StageParams) -> list[WeightNeed]:
    """The unset weight options of every slot of one stage."""
    needs = []
    for slot_name, marker in type(params).slots().items():
        cfg: SlotConfig | None = getattr(params, slot_name)
        if cfg is None:
            continue
        b, _ = cfg.resolve(marker.task)
        for option, weights in registry.weight_fields(b.load()).items():
            if not cfg.options.get(option):
                needs.append(WeightNeed(params.stage, slot_name, cfg.backend, option, weights))
    return needs


def required_for(recipe: Recipe) -> list[WeightSpec]:
    """The entries a recipe's stages need, in registry order."""
    names = {n.marker.entry for p in recipe.stages for n in stage_needs(p)}
    return [s for s in REGISTRY.values() if s.name in names]


def missing_for(recipe: Recipe, root: Path | str | None = None) -> list[WeightSpec]:
    return [s for s in required_for(recipe) if locate(s, root) is None]


def preflight(recipe: Recipe, root: Path | str | None = None) -> None:
    """Every weight of every stage checked at once; one BackendUnavailable naming all that is missing."""
    missing = missing_for(recipe, root)
    if not missing:
        return
    users: dict[str, list[str]] = {}
    for p in recipe.stages:
        for n in stage_needs(p):
            users.setdefault(n.marker.entry, []).append(f"{n.stage}.{n.slot} {n.backend}")
    listing = "; ".join(f"{s.name} (for {', '.join(users[s.name])}, ~{s.size_mb} MB)" for s in missing)
    raise BackendUnavailable(
        f"recipe {recipe.name!r} needs weights not found in {weights_root(root)}: {listing}. "
        f"Get them with: {fetch_command([s.name for s in missing], root)}"
    )


def with_weights(recipe: Recipe, root: Path | str | None = None) -> Recipe:
    """The recipe with every unset weight option filled with its local path (after ``preflight``)."""
    preflight(recipe, root)
    stages = []
    for params in recipe.stages:
        filled: dict[str, SlotConfig] = {}
        for n in stage_needs(params):
            cfg = filled.get(n.slot) or getattr(params, n.slot)
            options = {**cfg.options, n.option: str(resolve(n.marker.entry, n.marker.file, root))}
            filled[n.slot] = SlotConfig(backend=cfg.backend, options=options)
        stages.append(params.model_copy(update=filled) if filled else params)
    return recipe.model_copy(update={"stages": stages})
