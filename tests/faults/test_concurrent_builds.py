"""Two builds into the same OUT at once: the second is refused at once, naming the first; the
first finishes with every input accounted and a valid output."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pyarrow.parquet as pq
import pytest

from hoiforge import stages
from hoiforge.datasets.validate import validate
from hoiforge.errors import OutputError
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import build
from tests.conftest import DATA, FIXTURES

pytestmark = pytest.mark.slow


def test_a_second_build_into_the_same_out_is_refused_while_the_first_writes(ray_local, monkeypatch, tmp_path):
    monkeypatch.setitem(stages.REGISTRY, "pause", "tests.faults.stages:Pause")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in FIXTURES:
        shutil.copy(DATA / name, inputs / name)
    started, release = tmp_path / "started", tmp_path / "release"
    recipe = parse_recipe(
        {
            "name": "slow",
            "output": {"shard_max_count": 1},
            "stages": [{"stage": "decode"}, {"stage": "pause", "started_file": str(started), "release_file": str(release)}],
        }
    )
    out = tmp_path / "out"
    first: dict = {}

    def run_first() -> None:
        try:
            first["result"] = build([str(inputs)], out, recipe, progress=False)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            first["error"] = e

    thread = threading.Thread(target=run_first, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.1)
    assert started.exists(), first.get("error")
    try:
        with pytest.raises(OutputError) as e:
            build([str(inputs)], out, recipe, progress=False)
        assert f"{out} is being written by pid {os.getpid()} on {socket.gethostname()} since" in str(e.value)
    finally:
        release.write_text("go")
        thread.join(180)
    assert "error" not in first, first.get("error")
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert sorted(os.path.basename(r["key"]) for r in rows) == sorted(FIXTURES)
    assert all(r["status"] == "kept" for r in rows) and first["result"].stats["kept"] == len(FIXTURES)
    assert validate(out) == []
