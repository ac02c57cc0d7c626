"""Full shards whatever the keep rate: a few hundred generated images, half of them dropped,
``shard_max_count: 50``, ``test_size: 0.05``. Every shard but at most one per split holds >= 90%
of the limit, the test split is as few shards as its size allows, validate passes, and a build
killed mid-way then rerun ends with the same shards (same bytes) as an uninterrupted one."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hoiforge.datasets.validate import validate

from .generated import generated_inputs
from .test_kill_resume import KILL_POINTS, accounting, command, environment, run_and_kill

pytestmark = pytest.mark.slow

MAX = 50
RECIPE = f"""
name: fill-test
output: {{shard_max_count: {MAX}, test_size: 0.05, image_format: jpg}}
stages:
  - stage: decode
  - stage: resolution
    min_short_side: 64
  - stage: edges
    region: image
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return generated_inputs(tmp_path_factory.mktemp("fill") / "inputs", 300)


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    base = tmp_path_factory.mktemp("fill-reference")
    recipe = base / "recipe.yaml"
    recipe.write_text(RECIPE)
    out = base / "out"
    subprocess.run(command(inputs, out, recipe), env=environment(), check=True, capture_output=True)
    return recipe, out


def layout(out: Path) -> list[tuple[str, int, str]]:
    """The shards as (split, samples, sha256): what they hold, whatever they are named."""
    index = json.loads((out / "index.json").read_text())["shardlist"]
    return sorted((Path(s["url"]).name.split("-")[0], s["nsamples"], s["sha256"]) for s in index)


def test_every_shard_but_one_per_split_is_full(reference):
    _, out = reference
    assert validate(out) == []
    stats = json.loads((out / "stats.json").read_text())
    assert stats["inputs"] == 300 and stats["kept"] == 150
    shards = layout(out)
    for split in ("train", "test"):
        sizes = [n for s, n, _ in shards if s == split]
        assert sum(n < 0.9 * MAX for n in sizes) <= 1, (split, sizes)
        assert len(sizes) == math.ceil(stats["splits"][split] / MAX), (split, sizes)
    # Before compaction the write tasks had left many partial shards (listed in their parts).
    written = [
        s
        for part in (out / "_work" / "parts").glob("part-*.parquet")
        for s in json.loads(pq.read_schema(part).metadata[b"hoiforge.shards"])
    ]
    assert len(written) > len(shards)


@pytest.mark.parametrize("point", ["after-1-part", "mid-shard-write"])
def test_killed_build_resumes_to_the_same_shards(point, inputs, reference, tmp_path):
    recipe, expected = reference
    out = tmp_path / "out"
    run_and_kill(command(inputs, out, recipe), out, KILL_POINTS[point])
    assert not (out / "manifest.parquet").exists(), "the kill came after the build finished; move the kill point earlier"
    done = subprocess.run(command(inputs, out, recipe), env=environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert accounting(out) == accounting(expected)
    assert layout(out) == layout(expected)
    assert validate(out) == []
