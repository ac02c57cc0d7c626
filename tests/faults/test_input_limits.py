"""Inputs are read within limits: regular files only, listed size first, at most max_bytes + 1,
list entries kept inside the list's folder/bucket, every file found accounted, one clear sentence
when there is nothing to build."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from hoiforge.errors import InputError
from hoiforge.pipeline.adapter import batch_to_samples
from hoiforge.pipeline.inputs import list_inputs, read_input, refs_to_table
from hoiforge.pipeline.read import read_batch
from hoiforge.pipeline.source_read import InputTooLarge, NotRegularFile
from tests.conftest import DATA


def read_rows(refs, max_bytes=None, timeout=20):
    """read_batch over listing rows, in a thread: a read that blocks fails the test instead of hanging it."""
    table = refs_to_table(refs)
    table = table.append_column("index", pa.array(range(table.num_rows), pa.int64()))
    result = {}
    worker = threading.Thread(target=lambda: result.update(out=read_batch(table, max_bytes)), daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), "reading the inputs blocked"
    return {Path(s.key).name: s for s in batch_to_samples(result["out"])}


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "shoot"
    d.mkdir()
    (d / "coffee.png").write_bytes((DATA / "coffee.png").read_bytes())
    return d


def test_a_fifo_named_like_an_image_fails_unread_in_a_folder_and_in_a_list(folder):
    os.mkfifo(folder / "x.jpg")
    (folder / "list.csv").write_text("path\nx.jpg\ncoffee.png\n")
    for spec in (str(folder), str(folder / "list.csv")):
        refs = list_inputs([spec])
        [fifo] = [r for r in refs if r.key.endswith("x.jpg")]
        assert fifo.error == "not a regular file (a FIFO); not read"
        rows = read_rows(refs)
        assert rows["x.jpg"].status == "failed" and rows["x.jpg"].reason == fifo.error
        assert rows["coffee.png"].image == (DATA / "coffee.png").read_bytes()
    # Replaced by a FIFO after listing: the read itself refuses it, at once.
    with pytest.raises(NotRegularFile, match="FIFO"):
        read_input(str(folder / "x.jpg"), None, None, 5)


def test_a_device_in_a_list_is_refused_and_never_streamed(folder):
    (folder / "list.csv").write_text("path\n/dev/zero\ncoffee.png\n")
    with pytest.raises(InputError, match="outside the list's own folder.*--allow-outside-lists"):
        list_inputs([str(folder / "list.csv")])
    refs = list_inputs([str(folder / "list.csv")], allow_outside_lists=True)
    assert refs[0].error == "not a regular file (a character device); not read"
    with pytest.raises(NotRegularFile, match="character device"):
        read_input("/dev/zero", None, None, None, max_bytes=1000)


def test_an_oversized_file_in_a_list_fails_on_its_listed_size_without_being_opened(folder):
    big = folder / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(600_000))
    (folder / "list.csv").write_text("path\nbig.png\ncoffee.png\n")
    refs = list_inputs([str(folder / "list.csv")])
    assert refs[0].size == 600_004
    big.unlink()  # were it opened, the reason would be "file not found"
    rows = read_rows(refs, max_bytes=500_000)  # coffee.png: 467 kB
    assert rows["big.png"].status == "failed" and rows["big.png"].stage == "read"
    assert rows["big.png"].reason == "file too large: 600004 bytes > limit 500000 (decode max_bytes); not read"
    assert rows["coffee.png"].status == "ok"


def test_a_file_that_grew_after_listing_is_read_at_most_max_bytes_plus_one(folder):
    grown = folder / "grown.png"
    grown.write_bytes(bytes(10))
    [ref] = [r for r in list_inputs([str(grown)])]
    grown.write_bytes(bytes(3_000_000))
    with pytest.raises(InputTooLarge, match="limit 1000"):
        read_input(ref.uri, None, None, ref.size, max_bytes=1000)
    # Any fsspec filesystem: the stream is cut at max_bytes + 1, never read whole.
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/grown.png", bytes(3_000_000))
    reads: list[int] = []
    original = fs.open

    def counting_open(*a, **kw):
        f = original(*a, **kw)
        read = f.read
        f.read = lambda n=-1: reads.append(n) or read(n)
        return f

    fs.open = counting_open
    try:
        with pytest.raises(InputTooLarge):
            read_input("memory:///bucket/grown.png", None, None, 10, max_bytes=1000)
    finally:
        fs.open = original
    assert reads and all(0 < n <= 1001 for n in reads), reads


def test_list_entries_outside_the_lists_folder_or_filesystem_need_the_flag(folder, tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes((DATA / "coffee.png").read_bytes())
    (folder / "sub").mkdir()
    (folder / "sub" / "in.png").write_bytes((DATA / "coffee.png").read_bytes())
    for entry in (str(outside), "../elsewhere.png", "sub/../../elsewhere.png", "memory://bucket/a.jpg"):
        (folder / "list.csv").write_text(f"path\ncoffee.png\n{entry}\n")
        with pytest.raises(InputError, match="1 of its 2 entries are outside"):
            list_inputs([str(folder / "list.csv")])
    (folder / "list.csv").write_text(f"path\ncoffee.png\nsub/in.png\n{folder / 'sub' / 'in.png'}\n")
    assert len(list_inputs([str(folder / "list.csv")])) == 2  # inside, however spelled
    (folder / "list.csv").write_text(f"path\ncoffee.png\n{outside}\n")
    refs = list_inputs([str(folder / "list.csv")], allow_outside_lists=True)
    assert [r.key for r in refs] == [str(folder / "coffee.png"), str(outside)]


def test_remote_lists_stay_in_their_bucket():
    fs = fsspec.filesystem("memory")
    fs.pipe("/shop/photos/a.png", (DATA / "coffee.png").read_bytes())
    fs.pipe("/shop/lists/l.csv", b"path\nmemory:///shop/photos/a.png\n")
    assert [r.key for r in list_inputs(["memory://shop/lists/l.csv"])] == ["memory:///shop/photos/a.png"]
    fs.pipe("/shop/lists/l.csv", b"path\nmemory:///other-bucket/a.png\n")
    with pytest.raises(InputError, match="outside the list's own bucket"):
        list_inputs(["memory://shop/lists/l.csv"])


def test_s3_without_s3fs_says_what_to_install():
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401

        pytest.skip("s3fs is installed here: the missing-package message cannot be shown")
    except ImportError:
        pass
    with pytest.raises(InputError, match=r"pip install 'hoiforge\[s3\]'"):
        list_inputs(["s3://bucket/photos"])


def test_nothing_to_build_is_one_sentence(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"no files found \(empty folder\?\); accepted: images \(\.jpg"):
        list_inputs([str(empty)])
    odd = tmp_path / "odd"
    odd.mkdir()
    for name in ("a.txt", "b.txt", "c.pdf"):
        (odd / name).write_bytes(b"x")
    with pytest.raises(InputError) as e:
        list_inputs([str(odd)])
    message = str(e.value)
    assert "found 3 file(s) (2 .txt, 1 .pdf) and no image to build from; accepted: images (.jpg" in message
    assert ".heic" in message and "\n" not in message
