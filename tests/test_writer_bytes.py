"""write_tar / ShardTar: webdataset's member layout, byte for byte what tarfile writes, and the
sha256/size it reports for the index are the file's (the guard for any change to how the writer
streams and hashes)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest

from hoiforge.pipeline.writer import ShardTar, write_tar


def _stream_mode_reference(path, samples) -> None:
    with open(path, "wb") as f, tarfile.open(fileobj=f, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext in sorted(members):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mode, info.mtime = len(members[ext]), 0o444, 0
                info.uname = info.gname = "bigdata"
                tar.addfile(info, io.BytesIO(members[ext]))


def test_write_tar_bytes_sha256_and_size(tmp_path):
    rng = np.random.default_rng(0)
    samples = [
        (f"id{i:03d}", {"jpg": rng.integers(0, 256, int(n), dtype=np.uint8).tobytes(), "json": b'{"a":1}', "txt": "é".encode()})
        for i, n in enumerate(rng.integers(1, 200_000, 12))
    ]
    info = write_tar(tmp_path / "a.tar", samples)
    _stream_mode_reference(tmp_path / "ref.tar", samples)
    data = (tmp_path / "a.tar").read_bytes()
    assert data == (tmp_path / "ref.tar").read_bytes()
    assert info == {"filesize": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert tar.getnames()[:3] == ["id000.jpg", "id000.json", "id000.txt"]

    assert write_tar(tmp_path / "empty.tar", [])["sha256"] == hashlib.sha256((tmp_path / "empty.tar").read_bytes()).hexdigest()
    _stream_mode_reference(tmp_path / "empty-ref.tar", [])
    assert (tmp_path / "empty.tar").read_bytes() == (tmp_path / "empty-ref.tar").read_bytes()


def test_shard_tar_takes_any_bytes_like_and_stops_its_hasher_on_failure(tmp_path):
    """bytearray/memoryview members are hashed as written (copied before the hand-off, so a caller
    reusing its buffer cannot change what the thread hashes); a write that fails mid-way leaves no
    hashing thread behind."""
    buf = bytearray(b"x" * 3000)
    with ShardTar(tmp_path / "a.tar") as tar:
        tar.add("k1", [("bin", buf), ("txt", memoryview(b"abc"))])
        buf[:] = b"y" * 3000
        info = tar.close()
    data = (tmp_path / "a.tar").read_bytes()
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    with tarfile.open(tmp_path / "a.tar") as t:
        assert t.extractfile("k1.bin").read() == b"x" * 3000

    with pytest.raises(TypeError), ShardTar(tmp_path / "b.tar") as tar:
        tar.add("k2", [("txt", "not bytes")])
    assert not tar._hasher.is_alive() and tar._file.closed
