"""A tar rewritten with its members reordered between a run and its resume: every row keeps its own pixels."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.validate import validate
from hoiforge.pipeline.inputs import list_inputs, read_input, refs_to_table
from hoiforge.pipeline.manifest import committed_parts
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import build, update_listing
from hoiforge.pipeline.source_read import StaleMember
from tests.conftest import DATA

NAMES = ("a.png", "b.png", "c.jpg")
SOURCES = {"a.png": "astronaut.png", "b.png": "coffee.png", "c.jpg": "scenetext01.jpg"}


def write_tar(path: Path, order) -> None:
    with tarfile.open(path, "w") as tar:
        for name in order:
            tar.add(DATA / SOURCES[name], arcname=name)


def sha(name: str) -> str:
    return hashlib.sha256((DATA / SOURCES[name]).read_bytes()).hexdigest()


def test_a_stale_offset_is_refused_and_the_resume_listing_takes_fresh_offsets(tmp_path):
    src = tmp_path / "in.tar"
    write_tar(src, NAMES)
    first = list_inputs([str(src)])
    write_tar(src, reversed(NAMES))
    a = first[0]
    with pytest.raises(StaleMember, match="now holds 'c.jpg'"):
        read_input(a.uri, a.member, a.offset, a.size)

    layout = OutLayout(tmp_path / "out")
    layout.make()
    update_listing(layout, refs_to_table(first))
    resumed = update_listing(layout, refs_to_table(list_inputs([str(src)]))).to_pylist()
    assert [r["member"] for r in resumed] == list(NAMES) and [r["index"] for r in resumed] == [0, 1, 2]  # indices kept
    for r in resumed:
        data = read_input(r["uri"], r["member"], r["offset"], r["size"])
        assert hashlib.sha256(data).hexdigest() == sha(r["member"])
    assert pq.read_table(layout.listing).to_pylist() == resumed  # and that is what is saved


@pytest.mark.slow
def test_resume_after_the_tar_was_reordered(ray_local, tmp_path):
    src = tmp_path / "in.tar"
    write_tar(src, NAMES)
    out = tmp_path / "out"
    recipe = parse_recipe({"name": "tar", "output": {"shard_max_count": 1}, "stages": [{"stage": "decode"}]})
    build([str(src)], out, recipe, progress=False)
    # The state of a run killed before a.png was committed: drop its part and its shard.
    layout = OutLayout(out)
    for part in committed_parts(layout):
        rows = pq.read_table(part).to_pylist()
        if rows[0]["member"] == "a.png":
            (out / rows[0]["shard"]).unlink()
            part.unlink()
    (out / "manifest.parquet").unlink()
    write_tar(src, reversed(NAMES))  # the same members, other offsets

    result = build([str(src)], out, recipe, progress=False)
    assert result.processed == 1
    rows = {r["member"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert {m: r["status"] for m, r in rows.items()} == {n: "kept" for n in NAMES}
    for name, row in rows.items():
        assert row["sha256"] == sha(name), f"{name}'s row holds another member's bytes"
    assert validate(out) == []
