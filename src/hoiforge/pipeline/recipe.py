"""Recipes: YAML files that name the stages of a build and their settings, validated by pydantic.

Each stage entry is validated by that stage's own ``Params`` model, so a typo in any key is an
error that names the stage and the key, before any work starts.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hoiforge.errors import RecipeError
from hoiforge.stages import stage_class
from hoiforge.stages.base import StageParams


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shard_max_count: int = Field(1000, ge=1, description="samples per shard at most")
    shard_max_bytes: int = Field(1_000_000_000, ge=1024, description="bytes per shard at most (one sample may exceed it alone)")
    test_size: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of ids held out for test")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    description: str = ""
    output: OutputSpec = Field(default_factory=OutputSpec)
    stages: list[StageParams]

    def stage_names(self) -> list[str]:
        return [s.stage for s in self.stages]


def bundled_recipes() -> dict[str, Path]:
    folder = resources.files("hoiforge") / "recipes"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def _format_error(where: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(
            f"{where}: {loc}: {msg}"
            + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden" and "input" in e and not isinstance(e["input"], dict) else "")
        )
    return "\n".join(lines)


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping with 'name' and 'stages'")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise RecipeError(f"{source}: 'stages' must be a non-empty list")
    stages: list[StageParams] = []
    for i, entry in enumerate(raw_stages):
        if not isinstance(entry, dict) or "stage" not in entry:
            raise RecipeError(f"{source}: stages[{i}]: each stage is a mapping with a 'stage' key")
        try:
            cls = stage_class(entry["stage"])
        except KeyError as e:
            raise RecipeError(f"{source}: stages[{i}]: {e.args[0]}") from None
        try:
            stages.append(cls.Params.model_validate(entry))
        except ValidationError as e:
            raise RecipeError(_format_error(f"{source}: stages[{i}] ({entry['stage']})", e)) from None
    if stages[0].stage != "decode":
        raise RecipeError(f"{source}: the first stage must be 'decode' (it validates every image)")
    names = [s.stage for s in stages]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RecipeError(f"{source}: stage(s) listed twice: {', '.join(sorted(dupes))}")
    try:
        return Recipe.model_validate({**data, "stages": stages})
    except ValidationError as e:
        raise RecipeError(_format_error(source, e)) from None


def load_recipe(name_or_path: str) -> Recipe:
    """A bundled recipe by name (demo, hoihuman, shoeleg) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and name_or_path in bundled_recipes():
        path = bundled_recipes()[name_or_path]
    if not path.is_file():
        known = ", ".join(sorted(bundled_recipes()))
        raise RecipeError(f"recipe {name_or_path!r} not found: give a YAML path or one of: {known}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    return parse_recipe(data, source=path.name)
