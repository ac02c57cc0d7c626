"""Input listing: directories, globs, tars (with unsafe member names), lists, fsspec filesystems."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hoiforge.errors import InputError
from hoiforge.pipeline.inputs import list_inputs, read_input

from .conftest import DATA


def test_directory_is_listed_recursively_and_sorted(photo_dir):
    refs = list_inputs([str(photo_dir)])
    assert [Path(r.key).name for r in refs] == ["astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg"]
    assert all(r.member is None and r.size > 0 for r in refs)


def test_non_images_in_a_directory_are_rows_dropped_unread(photo_dir):
    (photo_dir / "README.txt").write_text("notes")
    refs = list_inputs([str(photo_dir)])
    assert len(refs) == 5
    [readme] = [r for r in refs if r.key.endswith("README.txt")]
    assert readme.skip == "not an image file by extension (.txt); not read" and readme.error is None


def test_glob_and_duplicate_specs(photo_dir):
    refs = list_inputs([str(photo_dir / "*.png"), str(photo_dir / "astronaut.png")])
    assert [Path(r.key).name for r in refs] == ["astronaut.png", "basketball1.png"]


def test_tar_members_are_read_by_byte_range_and_unsafe_names_flagged(tmp_path):
    src = tmp_path / "in.tar"
    with tarfile.open(src, "w") as tar:
        tar.add(DATA / "coffee.png", arcname="a/coffee.png")
        info = tarfile.TarInfo("../../etc/evil.jpg")
        payload = (DATA / "scenetext01.jpg").read_bytes()
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
        info = tarfile.TarInfo("notes.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    refs = list_inputs([str(src)])
    assert [r.member for r in refs] == ["a/coffee.png", "../../etc/evil.jpg", "notes.txt"]
    assert read_input(refs[0].uri, refs[0].member, refs[0].offset, refs[0].size) == (DATA / "coffee.png").read_bytes()
    assert refs[0].error is None and "unsafe tar member path" in refs[1].error
    assert refs[2].skip == "not an image file by extension (.txt); not read"


def test_parquet_and_csv_lists_resolve_relative_paths(photo_dir):
    pq.write_table(pa.table({"path": ["astronaut.png", "nested/coffee.png"]}), photo_dir / "list.parquet")
    (photo_dir / "list.csv").write_text("uri\nbasketball1.png\nmissing.jpg\n")
    refs = list_inputs([str(photo_dir / "list.parquet"), str(photo_dir / "list.csv")])
    assert [Path(r.key).name for r in refs] == ["astronaut.png", "coffee.png", "basketball1.png", "missing.jpg"]
    assert refs[-1].error == "file not found"


def test_any_fsspec_filesystem_goes_through_the_same_path():
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/shoots/a.jpg", (DATA / "scenetext01.jpg").read_bytes())
    fs.pipe("/bucket/shoots/b.png", (DATA / "coffee.png").read_bytes())
    refs = list_inputs(["memory://bucket/shoots"])
    assert [r.key for r in refs] == ["memory:///bucket/shoots/a.jpg", "memory:///bucket/shoots/b.png"]
    assert read_input(refs[1].uri, None, None, None) == (DATA / "coffee.png").read_bytes()


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list_inputs([str(tmp_path / "nope")])
    with pytest.raises(InputError, match="matches nothing"):
        list_inputs([str(tmp_path / "*.jpg")])
