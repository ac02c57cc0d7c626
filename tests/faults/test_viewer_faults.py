"""The viewer under a received OUT built to stall or exhaust it (issue #27 items 3, 4): a manifest row
whose source (or the tar holding its member) is a FIFO, a source read that never returns, a
32-bit mask.png with one huge id. One request never blocks the server; a mask's palette is bounded."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.report.viewer import REQUEST_THREADS, make_server
from tests.crafted_out import KEPT_ID, crafted_out


def get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _add_rows(out: Path, rows: list[dict]) -> None:
    table = pq.read_table(out / "manifest.parquet")
    base = dict.fromkeys(table.column_names)
    extra = pa.Table.from_pylist([{**base, **r} for r in rows], schema=table.schema)
    pq.write_table(pa.concat_tables([table, extra]), out / "manifest.parquet")


def _fifo_out(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """The crafted OUT plus rows whose source is a FIFO: as a plain file, and as the tar of a member."""
    out, rows = crafted_out(tmp_path)
    fifo = tmp_path / "sources" / "photos.tar"
    os.mkfifo(fifo)
    sha = hashlib.sha256(b"x").hexdigest()
    _add_rows(
        out,
        [
            {"key": f"{fifo}::a.png", "index": 10, "uri": str(fifo), "member": "a.png", "status": "failed", "stage": "read",
             "reason": "x", "sha256": sha},
            {"key": str(fifo), "index": 11, "uri": str(fifo), "status": "failed", "stage": "read", "reason": "x", "sha256": sha},
        ]
    )  # fmt: skip
    listing = [{"key": f"{fifo}::a.png", "member": "a.png", "offset": 512, "size": 100}]
    pq.write_table(pa.Table.from_pylist(listing), out / "_work" / "inputs.parquet")
    return out, {**rows, "fifo_member": 10, "fifo": 11}


def _serve(out: Path):
    srv = make_server(out, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def _burst(paths: list[str], limit: float) -> list[tuple[int, bytes]]:
    """Every path requested at once; the answers, or a failure if any is still waiting after ``limit`` s."""
    answers: list = [None] * len(paths)

    def one(i: int) -> None:
        answers[i] = get(paths[i], timeout=limit)

    clients = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(paths))]
    for c in clients:
        c.start()
    deadline = time.monotonic() + limit
    for c in clients:
        c.join(max(0.0, deadline - time.monotonic()))
    assert all(a is not None for a in answers), f"{sum(a is None for a in answers)} requests still blocked after {limit} s"
    return answers


def test_a_fifo_source_never_blocks_the_viewer(tmp_path):
    out, rows = _fifo_out(tmp_path)
    srv, server = _serve(out)
    try:
        paths = [f"{server}/api/{what}/{rows[r]}" for r in ("fifo_member", "fifo") for what in ("thumb", "sample", "source")]
        answers = _burst(paths * 3, limit=20)  # 18 requests: more than the server's threads
        for path, (status, body) in zip(paths * 3, answers, strict=True):
            if "/api/sample/" in path:
                assert status == 200 and json.loads(body)["source_readable"] is False
            else:
                assert status == 404, (path, status, body)
        assert get(f"{server}/api/facets", timeout=5)[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_source_read_that_never_returns_holds_no_request_thread(tmp_path, monkeypatch):
    from hoiforge.pipeline import inputs
    from hoiforge.report import viewer

    out, rows = crafted_out(tmp_path)
    release = threading.Event()
    monkeypatch.setattr(inputs, "read_input", lambda *a, **k: release.wait(60) and b"")  # a stalled remote, a hung mount
    monkeypatch.setattr(viewer, "SOURCE_READ_TIMEOUT", 0.5)
    srv, server = _serve(out)
    try:
        paths = [f"{server}/api/source/{rows['big']}"] * (2 * REQUEST_THREADS)
        started = time.monotonic()
        assert {status for status, _ in _burst(paths, limit=20)} == {404}
        assert time.monotonic() - started < 15
        assert get(f"{server}/api/facets", timeout=5)[0] == 200
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()


def _with_mask(tmp_path: Path, mask: bytes) -> tuple[Path, dict[str, int]]:
    """The crafted OUT whose kept sample (one product in its json) also has this mask.png member."""
    out, rows = crafted_out(tmp_path)
    shard = out / "shards" / "train-000000.tar"
    with tarfile.open(shard) as tar:
        members = {i.name: tar.extractfile(i).read() for i in tar}
    members[f"{KEPT_ID}.mask.png"] = mask
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    index = json.loads((out / "index.json").read_text())
    index["shardlist"][0]["filesize"] = shard.stat().st_size
    (out / "index.json").write_text(json.dumps(index))
    return out, rows


@pytest.mark.parametrize("huge", [5_000_000, 2**31 - 1])
def test_a_32_bit_mask_with_a_huge_id_draws_with_a_palette_bounded_by_the_products(tmp_path, monkeypatch, huge):
    from hoiforge.report import overlays
    from hoiforge.report.viewer import Viewer

    ids = np.zeros((64, 96), np.int32)
    ids[10:20, 10:30] = 1  # products[0]
    ids[40:50, 50:70] = huge  # no such product
    buf = io.BytesIO()
    Image.fromarray(ids).save(buf, "TIFF")  # a 32-bit image under the name mask.png
    out, rows = _with_mask(tmp_path, buf.getvalue())
    sizes: list[int] = []
    real = overlays._palette.__wrapped__
    monkeypatch.setattr(overlays, "_palette", lambda n: sizes.append(n) or real(n))

    started = time.monotonic()
    png, ctype = Viewer(out).overlay(rows["kept"], "mask")
    assert time.monotonic() - started < 5 and ctype == "image/png"
    assert sizes == [3]  # background, the one product, "not a product"
    rgba = np.asarray(Image.open(io.BytesIO(png)))
    assert tuple(rgba[45, 60]) == (255, 255, 255, 150)  # the unknown id: drawn, in one colour
    assert rgba[15, 20, 3] == 150 and tuple(rgba[15, 20, :3]) != (255, 255, 255) and rgba[0, 0, 3] == 0
