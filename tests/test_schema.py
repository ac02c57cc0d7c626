"""One json schema per build (datasets/schema.py) and the dataset card's column types (datasets/card.py)."""

from __future__ import annotations

import pytest
import yaml

from hoiforge.datasets.card import features, render
from hoiforge.datasets.contract import KNOWN_ANNOTATIONS
from hoiforge.datasets.schema import ShapeCheck, build_template, conform, declares, kind, merge
from hoiforge.pipeline.recipe import bundled_recipes, load_recipe
from hoiforge.pipeline.runner import instantiate, uniform_members
from hoiforge.stages import REGISTRY, stage_class


def _well_formed(template, path=""):
    k = kind(template)
    assert k != "null", f"{path}: a template needs a typed empty, not null"
    if k == "struct":
        for key, value in template.items():
            _well_formed(value, f"{path}.{key}")
    elif k == "list":
        assert len(template) == 1, f"{path}: a list template holds exactly its element's template"
        _well_formed(template[0], f"{path}[]")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_stage_declares_known_annotations_as_typed_empties(name):
    cls = stage_class(name)
    assert set(cls.annotations) <= set(KNOWN_ANNOTATIONS), name
    _well_formed(cls.annotations, name)


@pytest.mark.parametrize("recipe", sorted(bundled_recipes()))
def test_every_bundled_recipe_has_one_template_the_card_types(recipe):
    datasets = pytest.importorskip("datasets")
    stages = instantiate(load_recipe(recipe))
    template = build_template(stages)
    _well_formed(template)
    assert {"schema", "id", "split", "source", "image", "placeholders", "stages"} <= set(template)
    assert set(template["stages"]) == {s.name for s in stages}
    members = uniform_members(stages)
    columns = features(("jpg",), members, template)
    if any(m.endswith(".npy") for m in members):  # array shapes are the models': the builder infers them
        assert columns is None
        columns = features(("jpg",), tuple(m for m in members if not m.endswith(".npy")), template)
    typed = datasets.Features._from_yaml_list(columns)  # what load_dataset reads from the card
    assert "null" not in repr(typed) and typed["json"]["image"]["reencoded"] == datasets.Value("string")
    card = render({"name": recipe, "stages": [{"stage": s.name} for s in stages]}, {"splits": {"train": 3}}, "jpg", (), template)
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": "shards/train-*.tar"}]


def test_conform_fills_typed_empties_and_keeps_what_it_does_not_know():
    template = {"a": "", "b": [{"x": 0.0, "y": [""]}], "c": {"d": 0, "e": False}, "f": 0.0}
    doc = {"a": None, "b": [{"x": 1}, {"x": 2.5, "y": None}], "f": None, "extra": 3}
    assert conform(doc, template) == {
        "a": "",
        "b": [{"x": 1.0, "y": []}, {"x": 2.5, "y": []}],
        "c": {"d": None, "e": None},
        "f": None,  # a number may stay null: a nullable typed column
        "extra": 3,
    }
    assert conform({}, {"l": [{"x": ""}]}) == {"l": []}
    assert declares(template, "b[].y[]") and not declares(template, "b[].z") and not declares(template, "extra")


def test_merge_unions_structs_and_refuses_conflicting_types():
    assert merge({"p": [{"a": ""}]}, {"p": [{"b": 0.0}]}) == {"p": [{"a": "", "b": 0.0}]}
    with pytest.raises(ValueError, match=r"p\[\].a declared as string and as float"):
        merge({"p": [{"a": ""}]}, {"p": [{"a": 0.0}]})


def test_shape_check_flags_what_loaders_cannot_type():
    check = ShapeCheck()
    check.add({"s": "x", "n": 1.5, "l": ["a"], "d": {"k": 1}}, "one")
    check.add({"s": None, "n": None, "l": [], "d": {"k": 2, "j": 0}}, "two")
    check.add({"s": "y", "n": 2, "l": [], "d": {"k": 3}}, "three")
    problems = check.problems()
    assert any(p.startswith("json s: types differ: null in two, string in one") for p in problems), problems
    assert any(p.startswith("json n: types differ: float in one, int in three") for p in problems), problems
    assert any(p == "json d of one lacks ['j']" for p in problems), problems
    assert not any(p.startswith("json l") for p in problems)  # an empty list fits any list
    ok = ShapeCheck()
    ok.add({"n": 1.5}, "one")
    ok.add({"n": None}, "two")  # a null number: allowed
    assert ok.problems() == []
