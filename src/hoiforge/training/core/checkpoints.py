"""Where a stage's checkpoints live, which is newest, and rotation. Names: ``checkpoints/<stage>-<step:08d>``.

A checkpoint is written under a ``.tmp-`` name and renamed when complete, so a run killed while
saving never leaves a directory that looks finished. Its last file is ``checksums.json`` (sha256
and size of every other file): a checkpoint cut short later (a truncated copy, a bad disk) fails
``verify`` with a sentence naming the file, and ``latest_complete`` falls back to the newest one
that verifies.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from hoiforge.errors import HoiforgeError
from hoiforge.models.weights.digest import sha256_of

CHECKPOINTS = "checkpoints"
CHECKSUMS = "checksums.json"
log = logging.getLogger("hoiforge.training")


class CheckpointError(HoiforgeError):
    """A checkpoint that cannot be resumed from (broken, or none complete)."""


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


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def write_checksums(directory: Path) -> None:
    """Write ``checksums.json`` over every file of ``directory``: call it after everything else is written."""
    directory = Path(directory)
    sums = {p.relative_to(directory).as_posix(): {"sha256": sha256_of(p), "bytes": p.stat().st_size} for p in _files(directory)}
    tmp = directory / f".{CHECKSUMS}.tmp"
    tmp.write_text(json.dumps(sums, indent=1, sort_keys=True))
    tmp.replace(directory / CHECKSUMS)


def verify(directory: Path) -> str | None:
    """None when every file matches ``checksums.json``; else why not, naming the file."""
    directory = Path(directory)
    listing = directory / CHECKSUMS
    try:
        sums = json.loads(listing.read_text())
        if not isinstance(sums, dict):
            raise ValueError("not a mapping")
    except FileNotFoundError:
        return f"{directory} has no {CHECKSUMS} (its save was cut short, or an older hoiforge wrote it)"
    except (OSError, ValueError) as e:
        return f"{listing} is unreadable ({e})"
    for name, want in sums.items():
        path = directory / name
        if ".." in Path(name).parts or not path.resolve().is_relative_to(directory.resolve()):
            return f"{listing} names {name!r}, outside the checkpoint"
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if not isinstance(want, dict) or size != want.get("bytes"):
            return f"{path} is {size} bytes, not the {want.get('bytes') if isinstance(want, dict) else '?'} it was saved with (truncated?)"
        if sha256_of(path) != want.get("sha256"):
            return f"{path} does not match its checksum (corrupted)"
    return None


def latest_complete(output_dir: Path, name: str) -> tuple[int, Path] | None:
    """The newest checkpoint of the stage that verifies; each newer broken one is named in a warning.

    CheckpointError when checkpoints exist but none verifies (resuming from nothing would start the
    run again over them).
    """
    found = list_checkpoints(output_dir, name)
    broken = []
    for step, path in reversed(found):
        problem = verify(path)
        if problem is None:
            if broken:
                log.warning("%s: resuming from %s, the newest complete checkpoint", name, path)
            return step, path
        log.warning("%s: checkpoint %s is broken and skipped: %s", name, path, problem)
        broken.append(problem)
    if broken:
        raise CheckpointError(
            f"no complete checkpoint of {name!r} in {checkpoint_root(output_dir)} to resume from ({broken[0]}); "
            "restore a good copy, or train into another --out"
        )
    return None


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
