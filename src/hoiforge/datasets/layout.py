"""Where everything lives in an output directory. One place, so resume and finalize agree."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


class OutLayout:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.work = self.root / "_work"
        self.parts = self.work / "parts"
        self.compactions = self.work / "compactions"  # shard compaction records (pipeline/compact.py)
        self.listing = self.work / "inputs.parquet"
        self.recipe = self.work / "recipe.json"
        self.manifest = self.root / "manifest.parquet"
        self.index = self.root / "index.json"
        self.stats = self.root / "stats.json"

    def index_for(self, split: str) -> Path:
        return self.root / f"index.{split}.json"

    def make(self) -> None:
        for d in (self.shards, self.parts):
            d.mkdir(parents=True, exist_ok=True)


def tmp_path_for(final: Path) -> Path:
    """A temp name beside ``final`` that resume recognises and deletes (".tmp-" prefix)."""
    return final.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{final.name}")


def commit(tmp: Path, final: Path) -> None:
    """Make ``final`` appear atomically with its full content (fsync, then rename)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(final: Path, data: bytes) -> None:
    tmp = tmp_path_for(final)
    tmp.write_bytes(data)
    commit(tmp, final)
