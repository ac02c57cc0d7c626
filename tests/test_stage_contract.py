"""The stage contract: typed backend slots, declared reads/writes, recipes that fail before work starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from hoiforge.datasets.contract import KNOWN_ANNOTATIONS, KNOWN_MEMBERS
from hoiforge.errors import RecipeError
from hoiforge.models import registry
from hoiforge.pipeline.recipe import bundled_recipes, load_recipe, parse_recipe, writers_of
from hoiforge.stages import REGISTRY, stage_class
from hoiforge.stages.base import RecipeDeprecation

DATA = Path(__file__).parent / "data"
# Keys a stage needs besides its slots for a minimal valid entry.
EXTRA = {"wear_labels": {"source": "segmenter"}}


def _prerequisites(stage: str) -> list[dict]:
    """A decode-first stage list that satisfies ``stage``'s reads with default stages."""
    order: list[str] = []

    def add(name: str) -> None:
        for need in stage_class(name).reads:
            writer = writers_of(need)[0]
            if writer not in order and writer != name:
                add(writer)
        if name not in order:
            order.append(name)

    for need in stage_class(stage).reads:
        add(writers_of(need)[0])
    return [{"stage": "decode"}] + [{"stage": n} for n in order if n != "decode"]


def _slots_by_task() -> dict[str, tuple[str, str]]:
    found = {}
    for stage in REGISTRY:
        for slot_name, marker in stage_class(stage).Params.slots().items():
            found.setdefault(marker.task, (stage, slot_name))
    return found


@pytest.mark.parametrize("b", registry.all_backends(), ids=lambda b: f"{b.task}/{b.name}")
def test_a_typo_in_any_backend_option_names_stage_slot_and_key(b: registry.Backend):
    stage, slot = _slots_by_task()[b.task]
    stages = [*_prerequisites(stage), {"stage": stage, **EXTRA.get(stage, {}), slot: {"backend": b.name, "options": {"tresh": 3}}}]
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "t", "stages": stages}, source="typo.yaml")
    where = f"typo.yaml: stages[{len(stages) - 1}] ({stage}): {slot}: options.tresh: unknown key (backend '{b.name}' takes:"
    assert where in str(e.value)


@pytest.mark.parametrize("b", registry.all_backends(), ids=lambda b: f"{b.task}/{b.name}")
def test_every_backend_publishes_typed_options(b: registry.Backend):
    options = b.options
    assert options.model_config["extra"] == "forbid"
    defaults = {name: "x" if f.is_required() else f.default for name, f in options.model_fields.items()}
    assert options.model_validate(defaults).model_dump() == defaults
    assert hasattr(b.load(), "check"), f"{b.target} has no check(): it must say before work starts whether it runs"


def _bad_orders():
    """For each bundled recipe: each stage moved in front of a stage that writes what it reads."""
    cases = []
    for name in sorted(bundled_recipes()):
        stages = yaml.safe_load(bundled_recipes()[name].read_text())["stages"]
        names = [s["stage"] for s in stages]
        for j, reader in enumerate(stages):
            params = stage_class(reader["stage"]).Params.model_validate(reader)
            needs = set(stage_class(reader["stage"])(params).requires())
            for i in range(1, j):
                writer = stages[i]["stage"]
                if needs & set(stage_class(writer).writes) and not any(needs <= set(stage_class(n).writes) for n in names[:i]):
                    cases.append((name, i, j))
    return cases


@pytest.mark.parametrize("name,i,j", _bad_orders())
def test_every_bad_stage_order_names_the_producer(name: str, i: int, j: int):
    data = yaml.safe_load(bundled_recipes()[name].read_text())
    stages = data["stages"]
    moved = [*stages[:i], stages[j], *stages[i:j], *stages[j + 1 :]]
    with pytest.raises(RecipeError) as e:
        parse_recipe({**data, "stages": moved}, source=f"{name}.yaml")
    msg = str(e.value)
    reader = stages[j]["stage"]
    written = {w for st in stages[:i] for w in stage_class(st["stage"]).writes}
    params = stage_class(reader).Params.model_validate(stages[j])
    unmet = [n for n in stage_class(reader)(params).requires() if n not in written]
    assert f"stages[{i}] ({reader}): {reader} needs {unmet[0]} (written by: " in msg
    assert any(f"the {w} stage" in msg or f"a {w} stage" in msg for w in writers_of(unmet[0]))


def test_the_issue_example_shoes_without_pose():
    with pytest.raises(RecipeError, match=r"shoes needs keypoints \(written by: pose\); put a pose stage before it"):
        parse_recipe({"name": "t", "stages": [{"stage": "decode"}, {"stage": "shoes"}]})


def test_bundled_recipes_use_the_slot_form_and_parse_without_warnings():
    for name in bundled_recipes():
        with warnings.catch_warnings():
            warnings.simplefilter("error", RecipeDeprecation)
            load_recipe(name)


def test_old_recipe_form_still_works_with_the_migration_message(tmp_path):
    old = {
        "name": "old",
        "stages": [
            {"stage": "decode"},
            {"stage": "person", "backend": "mediapipe", "options": {"min_face_score": 0.6}},
            {"stage": "products", "detector": "embedded", "segmenter": "embedded", "box_threshold": 0.3},
            {"stage": "cleanup", "ocr": "rapidocr", "ocr_options": {"box_thresh": 0.4}, "inpaint": "telea", "min_score": 0.6},
            {"stage": "caption", "backend": "template", "prompt": "describe"},
        ],
    }
    with pytest.warns(RecipeDeprecation) as caught:
        r = parse_recipe(old, source="old.yaml")
    messages = " | ".join(str(w.message) for w in caught)
    assert "old.yaml: stages[1] (person)" in messages and "write each backend slot as '<slot>: {backend: NAME, options: {...}}'" in messages
    assert "box_threshold: ignored (backend 'embedded' has no such option)" in messages
    stages = {p.stage: p for p in r.stages}
    assert (stages["person"].detector.backend, stages["person"].detector.options) == ("mediapipe", {"min_face_score": 0.6})
    assert stages["cleanup"].ocr.options == {"box_thresh": 0.4, "min_score": 0.6}
    assert stages["caption"].captioner.backend == "template"


def test_options_typo_in_an_old_form_recipe_still_names_the_key():
    with pytest.warns(RecipeDeprecation), pytest.raises(RecipeError, match=r"detector: options.tresh: unknown key"):
        parse_recipe({"name": "t", "stages": [{"stage": "decode"}, {"stage": "person", "backend": "mediapipe", "options": {"tresh": 1}}]})


def test_vocabulary_every_declared_read_and_write_is_known():
    for name in REGISTRY:
        cls = stage_class(name)
        for key in (*cls.reads, *cls.writes):
            assert key in KNOWN_MEMBERS or key in KNOWN_ANNOTATIONS, f"{name} declares unknown {key!r}"
        for key in cls.reads:
            assert writers_of(key), f"{name} reads {key!r}, which no stage writes"


def test_every_declared_metric_is_drawable_and_owned_by_one_stage():
    from typing import get_args

    from hoiforge.stages.metric_spec import Kind, Plot

    owner: dict[str, str] = {}
    for name in REGISTRY:
        for spec in stage_class(name).metrics:
            assert spec.kind in get_args(Kind) and spec.how in get_args(Plot), (name, spec)
            assert spec.name not in owner, f"{spec.name} declared by {owner.get(spec.name)} and {name}"
            owner[spec.name] = name
    assert {"shoes", "shoe_area", "wear_wearable", "wear_confidence", "wear_review", "persons"} <= set(owner)


def test_execution_kind_is_derived_from_the_backends():
    r = load_recipe("demo")
    from hoiforge.pipeline.runner import instantiate

    kinds = {s.name: s.execution for s in instantiate(r)}
    assert kinds == {"decode": "tasks", "resolution": "tasks", "person": "actors", "pose": "actors", "edges": "tasks", "caption": "tasks"}
    gpu = parse_recipe({"name": "g", "stages": [{"stage": "decode"}, {"stage": "edges", "region": "image", "resources": {"num_gpus": 1}}]})
    assert instantiate(gpu)[1].execution == "actors"


def test_a_stage_runs_on_samples_without_ray():
    """The contract is pure Python: decode + person + pose on real photos, no Ray imported."""
    code = f"""
import sys
from hoiforge.stages.testing import decoded
from hoiforge.stages.person import Person
from hoiforge.stages.pose import Pose
from hoiforge.stages.resolution import Resolution
samples = [decoded({str(DATA / "basketball1.png")!r}, 0), decoded({str(DATA / "coffee.png")!r}, 1)]
for stage in (Resolution(Resolution.Params(stage="resolution", min_short_side=450)), Person(Person.Params(stage="person")), Pose(Pose.Params(stage="pose"))):
    stage.setup()
    stage.process([s for s in samples if s.live])
    stage.teardown()
basket, coffee = samples
assert basket.live and len(basket.ann["persons"][0]["keypoints"]) == 133 and "pose.png" in basket.members, basket
assert coffee.status == "dropped" and coffee.reason_code == "resolution.short_side" and coffee.reason_params == {{"short_side": 400, "min": 450}}
assert "ray" not in sys.modules, "a stage imported ray"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


@pytest.mark.parametrize(
    "patch,expected",
    [
        ({"stage": "quality", "scorer": {"backend": "brisque", "options": {"tresh": 3}}}, "quality): scorer: options.tresh: unknown key"),
        ({"stage": "shoes"}, "shoes needs keypoints (written by: pose)"),
    ],
)
def test_build_refuses_a_bad_recipe_in_seconds_before_ray(tmp_path, patch, expected):
    recipe = {"name": "bad", "stages": [{"stage": "decode"}, patch]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hoiforge.cli",
            "build",
            str(DATA / "coffee.png"),
            "--out",
            str(out),
            "--recipe",
            str(tmp_path / "bad.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode != 0 and expected in " ".join(done.stderr.split()), done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
    assert "Started a local Ray instance" not in done.stderr + done.stdout
    print(json.dumps({"seconds": round(elapsed, 2)}))  # measured, not asserted: see the closing note
