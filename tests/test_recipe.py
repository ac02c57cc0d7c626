"""Recipes: bundled ones carry the papers' settings; mistakes are errors that name the key."""

from __future__ import annotations

import pytest
import yaml

from hoiforge.errors import RecipeError
from hoiforge.pipeline.recipe import bundled_recipes, load_recipe, parse_recipe


def test_bundled_recipes_load():
    assert {"demo", "hoihuman", "shoeleg"} <= set(bundled_recipes())
    for name in bundled_recipes():
        assert load_recipe(name).stages[0].stage == "decode"


def test_hoihuman_carries_the_paper_settings_verbatim():
    r = load_recipe("hoihuman")
    by = {s.stage: s for s in r.stages}
    assert by["resolution"].min_short_side == 256
    assert by["person"].min_score == 0.5 and (by["person"].min_persons, by["person"].max_persons) == (1, 5)
    assert (by["edges"].low, by["edges"].high) == (75, 100)


def _demo() -> dict:
    from hoiforge.pipeline.recipe import bundled_recipes

    return yaml.safe_load(bundled_recipes()["demo"].read_text())


def test_unknown_key_is_named():
    data = _demo()
    data["stages"][2]["min_scor"] = 0.3
    with pytest.raises(RecipeError, match=r"stages\[2\] \(person\): min_scor: unknown key"):
        parse_recipe(data)


def test_bad_value_is_named_with_the_value():
    data = _demo()
    data["stages"][1]["min_short_side"] = -5
    with pytest.raises(RecipeError, match=r"stages\[1\] \(resolution\): min_short_side: .*greater than or equal to 1.*-5"):
        parse_recipe(data)


def test_unknown_stage_and_top_level_key():
    data = _demo()
    data["stages"].append({"stage": "teleport"})
    with pytest.raises(RecipeError, match="unknown stage 'teleport'"):
        parse_recipe(data)
    data = _demo()
    data["outptu"] = {}
    with pytest.raises(RecipeError, match="outptu: unknown key"):
        parse_recipe(data)


def test_decode_must_come_first_and_missing_recipe_lists_bundled():
    data = _demo()
    data["stages"] = data["stages"][1:]
    with pytest.raises(RecipeError, match="first stage must be 'decode'"):
        parse_recipe(data)
    with pytest.raises(RecipeError, match="demo"):
        load_recipe("no-such-recipe")
