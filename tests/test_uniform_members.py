"""Every kept sample of a build carries the same members: placeholders fill what a stage wrote for
some samples only, and validate refuses a build whose member sets differ."""

from __future__ import annotations

import io
import json
import tarfile
from itertools import count

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from hoiforge.datasets.contract import KNOWN_MEMBERS
from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.placeholders import placeholder
from hoiforge.datasets.schema import BASE, conform, member_template, merge
from hoiforge.datasets.validate import validate
from hoiforge.pipeline.inputs import list_inputs, refs_to_table
from hoiforge.pipeline.manifest import finalize
from hoiforge.pipeline.recipe import OutputSpec, parse_recipe
from hoiforge.pipeline.runner import instantiate, uniform_members
from hoiforge.pipeline.writer import write_part
from hoiforge.stages.testing import decoded

from .conftest import DATA, FIXTURES

TEMPLATE = merge(BASE, {"products": [{"label": ""}]})


@pytest.mark.parametrize("member", sorted(KNOWN_MEMBERS))
def test_every_known_member_has_a_valid_placeholder(member):
    data = placeholder(member, 30, 20)
    if member.endswith((".png", ".jpg")):
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if member.endswith(".png"):
                assert img.size == (30, 20) and not np.asarray(img).any()
    elif member.endswith(".json"):  # the member's typed empties (leg.json), else {}
        assert json.loads(data) == conform({}, member_template(member) or {})
    elif member.endswith(".npy"):
        assert np.load(io.BytesIO(data)).size == 0
    else:
        assert data == b""


def build(tmp_path, uniform, template=TEMPLATE):
    layout = OutLayout(tmp_path / "out")
    layout.make()
    samples = [decoded(DATA / n, index=i) for i, n in enumerate(FIXTURES)]
    samples[0].members["mask.png"] = placeholder("mask.png", samples[0].ann["image"]["width"], samples[0].ann["image"]["height"])
    samples[0].ann["products"] = [{"label": "x"}]
    seq = count()
    write_part(layout, OutputSpec(), samples, lambda split: next(seq), uniform, template)
    listing = refs_to_table(list_inputs([str(DATA / n) for n in FIXTURES]))
    finalize(layout, listing.append_column("index", pa.array(range(4), pa.int64())), {})
    return layout


def test_placeholders_make_the_member_set_uniform(tmp_path):
    layout = build(tmp_path, ("mask.png", "txt"))
    with tarfile.open(next(layout.shards.glob("*.tar"))) as tar:
        names = tar.getnames()
        anns = [json.loads(tar.extractfile(n).read()) for n in names if n.endswith(".json")]
    assert sum(n.endswith(".mask.png") for n in names) == sum(n.endswith(".txt") for n in names) == 4
    assert sorted(a["placeholders"] for a in anns) == [["mask.png", "txt"]] * 3 + [["txt"]]
    assert validate(layout.root) == []


def test_validate_refuses_differing_member_sets(tmp_path):
    layout = build(tmp_path, ())
    problems = validate(layout.root)
    assert problems and "not uniform" in problems[0] and "lacks ['mask.png']" in problems[1]


def test_image_members_must_agree_unless_image_format_is_source(tmp_path):
    layout = build(tmp_path, ("mask.png",))
    assert validate(layout.root) == []  # no recipe.json: an output built as "source" (png and jpg inputs)
    layout.recipe.write_text(json.dumps({"output": {"image_format": "jpg"}}))
    problems = validate(layout.root)
    assert problems and "not uniform" in problems[0]


def test_the_uniform_set_is_what_the_recipe_can_write():
    recipe = parse_recipe({"name": "t", "stages": [{"stage": "decode"}, {"stage": "edges", "region": "image"}, {"stage": "caption"}]})
    assert uniform_members(instantiate(recipe)) == ("edge.png", "txt")
