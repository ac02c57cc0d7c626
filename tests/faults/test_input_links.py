"""A received input folder whose symlinks point out of it (issue #27 item 13): ``bad/link.jpg`` ->
/etc/passwd was read into the build. A link that leaves the folder is a failed row with its own
reason code, never read; links inside the folder and a link the user names themself still work."""

from __future__ import annotations

import os
import shutil

import pyarrow as pa

from hoiforge.pipeline.inputs import list_inputs, refs_to_table
from hoiforge.pipeline.read import read_batch
from tests.conftest import DATA


def _rows(specs: list[str]) -> dict[str, dict]:
    listing = refs_to_table(list_inputs(specs))
    listing = listing.append_column("index", pa.array(range(listing.num_rows), pa.int64()))
    rows = read_batch(listing).to_pylist()
    return {os.path.basename(r["key"]): r for r in rows}


def test_links_leaving_the_input_folder_are_failed_rows_never_read(tmp_path):
    folder = tmp_path / "bad"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(DATA / "coffee.png", folder / "sub" / "real.png")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(DATA / "astronaut.png", outside / "photo.png")
    (folder / "link.jpg").symlink_to("/etc/passwd")
    (folder / "escape.png").symlink_to(outside / "photo.png")
    (folder / "dir").symlink_to(outside)
    (folder / "inside.png").symlink_to(folder / "sub" / "real.png")

    rows = _rows([str(folder)])
    for name in ("link.jpg", "escape.png", "dir"):
        row = rows[name]
        assert row["status"] == "failed" and row["reason_code"] == "read.link_outside_input", row
        assert "symlink leads outside the input folder; not read" in row["reason"]
        assert row["image"] is None and row["ann"] == "{}"  # never read
    assert rows["inside.png"]["image"] == (DATA / "coffee.png").read_bytes() and rows["real.png"]["image"]

    named = _rows([str(folder / "escape.png")])  # the user names the link: their choice, it is read
    assert named["escape.png"]["image"] == (DATA / "astronaut.png").read_bytes()
