"""The output disk fills up mid-run: a clear error, committed shards intact, rerun completes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.validate import validate
from hoiforge.errors import OutputError
from hoiforge.pipeline.manifest import committed_parts, part_shards
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import build
from tests.conftest import DATA

pytestmark = pytest.mark.slow

RECIPE = {"name": "disk", "output": {"shard_max_count": 1}, "stages": [{"stage": "decode"}, {"stage": "edges", "region": "image"}]}


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root): the disk-full test needs a real full disk")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_mid_run(ray_local, small_disk, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg"):
        shutil.copy(DATA / name, inputs / name)
        Image.open(DATA / name).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(inputs / f"flip_{name}")
    out = small_disk / "out"
    with pytest.raises(OutputError, match="No space left on device.*rerun the same command"):
        build([str(inputs)], out, parse_recipe(RECIPE), progress=False)

    layout = OutLayout(out)
    parts = committed_parts(layout)
    for part in parts:  # every committed shard is whole: size and sha256 as the writer recorded them
        for shard in part_shards(part):
            data = (out / shard["url"]).read_bytes()
            assert len(data) == shard["filesize"] and hashlib.sha256(data).hexdigest() == shard["sha256"]

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    result = build([str(inputs)], out, parse_recipe(RECIPE), progress=False)
    assert result.processed == 8 - sum(pq.read_table(p).num_rows for p in parts)
    assert result.stats["kept"] == 8 and validate(out) == []
    index = json.loads((out / "index.json").read_text())
    assert sum(s["nsamples"] for s in index["shardlist"]) == 8
