from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

DATA = Path(__file__).parent / "data"
FIXTURES = ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg")


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header declares width x height: a decompression bomb's shape."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes of header fields
    patched = b"IHDR" + struct.pack(">II", width, height) + bytes(ihdr[12:17])
    data[12:29] = patched
    data[29:33] = struct.pack(">I", zlib.crc32(patched) & 0xFFFFFFFF)
    return bytes(data)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the in-process builds of the whole session (start-up costs ~10 s)."""
    import ray

    os.environ["HOIFORGE_KEEP_RAY"] = "1"
    if not ray.is_initialized():
        # Workers import the test-only fault stages (tests.faults) from the repo root.
        root = str(Path(__file__).resolve().parent.parent)
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """The real fixture photos, in a nested folder (recursive listing)."""
    d = tmp_path / "photos"
    (d / "nested").mkdir(parents=True)
    for name in FIXTURES[:2]:
        shutil.copy(DATA / name, d / name)
    for name in FIXTURES[2:]:
        shutil.copy(DATA / name, d / "nested" / name)
    return d


@pytest.fixture
def bad_dir(tmp_path: Path) -> Path:
    """Bad inputs with image extensions: each must end as a `failed` row, never a crash."""
    d = tmp_path / "bad"
    d.mkdir()
    (d / "zero.jpg").write_bytes(b"")
    good = (DATA / "scenetext01.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "not_an_image.png").write_bytes(b"hello, I am a text file\n" * 20)
    (d / "bomb.png").write_bytes(png_with_declared_size(30000, 30000))
    return d


@pytest.fixture(scope="module")
def torch_one_thread():
    """Torch on one thread for a module: on a shared 2-core machine OpenMP threads spin against
    each other, and one thread runs the tiny models 10-30x faster."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
