"""write_tar: webdataset's member layout written by plain tarfile, and the md5/size it reports for
the index are the file's (the guard for any change to how the writer streams and hashes)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np

from hoiforge.pipeline.writer import write_tar


def _stream_mode_reference(path, samples) -> None:
    with open(path, "wb") as f, tarfile.open(fileobj=f, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext in sorted(members):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mode, info.mtime = len(members[ext]), 0o444, 0
                info.uname = info.gname = "bigdata"
                tar.addfile(info, io.BytesIO(members[ext]))


def test_write_tar_bytes_md5_and_size(tmp_path):
    rng = np.random.default_rng(0)
    samples = [
        (f"id{i:03d}", {"jpg": rng.integers(0, 256, int(n), dtype=np.uint8).tobytes(), "json": b'{"a":1}', "txt": "é".encode()})
        for i, n in enumerate(rng.integers(1, 200_000, 12))
    ]
    info = write_tar(tmp_path / "a.tar", samples)
    _stream_mode_reference(tmp_path / "ref.tar", samples)
    data = (tmp_path / "a.tar").read_bytes()
    assert data == (tmp_path / "ref.tar").read_bytes()
    assert info == {"filesize": len(data), "md5sum": hashlib.md5(data).hexdigest()}
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert tar.getnames()[:3] == ["id000.jpg", "id000.json", "id000.txt"]

    assert write_tar(tmp_path / "empty.tar", [])["md5sum"] == hashlib.md5((tmp_path / "empty.tar").read_bytes()).hexdigest()
