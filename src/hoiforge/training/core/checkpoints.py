"""Where a stage's checkpoints live, which is newest, and rotation. Names: ``checkpoints/<stage>-<step:08d>``.

A checkpoint is written under a ``.tmp-`` name and renamed when complete, so a run killed while
saving never leaves a directory that looks finished.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

CHECKPOINTS = "checkpoints"


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def checkpoint_dir(output_dir: Path, name: str, step: int) -> Path:
    return checkpoint_root(output_dir) / f"{name}-{step:08d}"


def temp_dir(output_dir: Path, name: str, step: int) -> Path:
    return checkpoint_root(output_dir) / f".tmp-{name}-{step:08d}"


def list_checkpoints(output_dir: Path, name: str) -> list[tuple[int, Path]]:
    """(step, path) of this stage's complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(name)}-(\d{{8}})$")
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := pattern.match(p.name))]
    return sorted(found)


def latest_checkpoint(output_dir: Path, name: str) -> tuple[int, Path] | None:
    found = list_checkpoints(output_dir, name)
    return found[-1] if found else None


def rotate(output_dir: Path, name: str, keep: int | None) -> list[Path]:
    """Delete this stage's oldest checkpoints beyond ``keep`` (and stale temp dirs); the deleted paths."""
    removed = []
    for stale in checkpoint_root(output_dir).glob(f".tmp-{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale)
    if keep is None:
        return removed
    found = list_checkpoints(output_dir, name)
    for _, path in found[: max(0, len(found) - keep)]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
