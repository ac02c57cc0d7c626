"""Recipes: YAML files that name the stages of a build and their settings, validated by pydantic.

Everything a recipe can get wrong fails here, on the driver, before Ray starts (DESIGN.md
invariant 3): each stage entry is validated by that stage's own ``Params`` model, and each
backend slot's ``options`` by that backend's typed options, so a typo is an error naming the
stage, the slot and the key; and every annotation or member a stage reads must be written by a
stage before it ("shoes needs keypoints (written by: pose); put a pose stage before it").
"""

from __future__ import annotations

import json
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hoiforge import safe_yaml
from hoiforge.errors import RecipeError, shown
from hoiforge.stages import REGISTRY, stage_class
from hoiforge.stages.base import RecipeDeprecation, Stage, StageParams


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shard_max_count: int = Field(1000, ge=1, description="samples per shard at most")
    shard_max_bytes: int = Field(1_000_000_000, ge=1024, description="bytes per shard at most (one sample may exceed it alone)")
    test_size: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of ids held out for test")
    image_format: Literal["source", "jpg", "png", "webp"] = Field(
        "source",
        description="format of every stored image: source keeps each input's own (jpg/png/webp); jpg, png or webp gives "
        "every sample the same image member, which Hugging Face datasets needs (a JPEG stays byte-identical under jpg)",
    )
    image_quality: int = Field(95, ge=50, le=100, description="JPEG/WebP quality of images re-encoded for image_format")


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
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "value_error":
            msg = e["msg"].removeprefix("Value error, ")
        else:
            msg = e["msg"] + (f" (got {shown(e['input'])})" if "input" in e and not isinstance(e["input"], dict) else "")
        lines += [f"{where}: {loc + ': ' if loc else ''}{line}" for line in msg.splitlines()]
    return "\n".join(lines)


def _validate_stage(cls: type[Stage], entry: dict, where: str) -> StageParams:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecipeDeprecation)
        try:
            params, error = cls.Params.model_validate(entry), None
        except ValidationError as e:
            params, error = None, RecipeError(_format_error(where, e))
    # The migration message matters most when the old form also has a mistake: say both.
    for w in caught:
        if issubclass(w.category, RecipeDeprecation):
            warnings.warn(f"{where}: {w.message}", RecipeDeprecation, stacklevel=3)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if error is not None:
        raise error
    return params


def writers_of(name: str) -> list[str]:
    """The stages that may write annotation key or member ``name``."""
    return [stage for stage in REGISTRY if name in stage_class(stage).writes]


def check_order(stages: list[StageParams], source: str) -> None:
    """Every read has a writer before it; RecipeError naming the stage, what it needs and who writes it."""
    written: set[str] = set()
    position = {p.stage: i for i, p in enumerate(stages)}
    for i, params in enumerate(stages):
        stage = stage_class(params.stage)(params)
        for need in stage.requires():
            if need in written:
                continue
            writers = writers_of(need)
            later = [w for w in writers if w in position]
            if later:
                fix = f"move the {later[0]} stage (stages[{position[later[0]]}]) before it"
            elif writers:
                fix = f"put a {writers[0]} stage before it"
            else:
                fix = "no stage writes it"
            raise RecipeError(
                f"{source}: stages[{i}] ({params.stage}): {params.stage} needs {need} (written by: {', '.join(writers) or 'none'}); {fix}"
            )
        written.update(stage.provides())


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
        stages.append(_validate_stage(cls, entry, f"{source}: stages[{i}] ({entry['stage']})"))
    if stages[0].stage != "decode":
        raise RecipeError(f"{source}: the first stage must be 'decode' (it validates every image)")
    names = [s.stage for s in stages]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RecipeError(f"{source}: stage(s) listed twice: {', '.join(sorted(dupes))}")
    check_order(stages, source)
    try:
        recipe = Recipe.model_validate({**data, "stages": stages})
    except ValidationError as e:
        raise RecipeError(_format_error(source, e)) from None
    return recipe


def load_recipe(name_or_path: str) -> Recipe:
    """A bundled recipe by name (demo, hoihuman, shoeleg) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and name_or_path in bundled_recipes():
        path = bundled_recipes()[name_or_path]
    if not path.is_file():
        known = ", ".join(sorted(bundled_recipes()))
        raise RecipeError(f"recipe {name_or_path!r} not found: give a YAML path or one of: {known}")
    try:
        data = safe_yaml.load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    return parse_recipe(data, source=path.name)


def built_stages(recipe_json: Path) -> list[Stage]:
    """The stages of the recipe an output was built with (its recipe.json), for finalize's hooks;
    [] for an output without one."""
    if not recipe_json.exists():
        return []
    entries = json.loads(recipe_json.read_text()).get("stages", [])
    return [stage_class(e["stage"])(stage_class(e["stage"]).Params.model_validate(e)) for e in entries]
