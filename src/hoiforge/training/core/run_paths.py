"""Paths a RUN records about itself: relative to the RUN, and refused when they lead out of it.

A RUN (a trainer's output folder) is copied, archived and sent to other people, so what it
records must not depend on where it was written: a record holding ``/home/a/run/sw/base`` makes a
copy silently load the original's files, and a crafted record can point ``generate`` at any local
folder. Records therefore hold one of:

- a path inside the RUN, relative to it (``sw/base``), resolved against the RUN that is read,
  symlinks included, and refused if it leaves it;
- a weights-registry name (``stable-diffusion-v1-5``), resolved under the user's own weights root;
- a folder outside the RUN: only the user who trained it can vouch for it, so reading it needs an
  explicit ``--allow-outside-run`` (like lists' ``--allow-outside-lists``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hoiforge.errors import HoiforgeError

ALLOW_FLAG = "--allow-outside-run"


class RunPathError(HoiforgeError):
    """A RUN records a path that leaves it."""


def is_inside(path: str | Path, run: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(run).resolve())


def relative(path: str | Path, run: str | Path) -> str:
    """``path`` (inside ``run``) as the POSIX path a record stores."""
    if not is_inside(path, run):
        raise RunPathError(f"{path} is not inside the run {run}; a run records only paths inside itself")
    return Path(path).resolve().relative_to(Path(run).resolve()).as_posix()


def inside(run: str | Path, recorded: str | Path, what: str) -> Path:
    """The path a record names, inside ``run``; RunPathError when it is absolute or leads out (``..``, a symlink)."""
    run = Path(run)
    rel = Path(recorded)
    if rel.is_absolute() or not is_inside(run / rel, run):
        raise RunPathError(f"{what} names {str(recorded)!r}, outside the run {run}; a run may only point inside itself")
    return run / rel


def check_inside(run: str | Path, path: str | Path, what: str) -> Path:
    """``path`` itself (a file or folder the reader is about to load) must resolve inside ``run``."""
    if not is_inside(path, run):
        raise RunPathError(f"{what} {path} leads outside the run {run} (a symlink?); a run may only point inside itself")
    return Path(path)


def model_record(folder: str | Path, run: str | Path, registry_name: str | None = None) -> dict[str, Any]:
    """How a record names a model folder: ``{"run": rel}``, ``{"weights": name}`` or ``{"outside": abs}``."""
    if registry_name is not None:
        return {"weights": registry_name}
    if is_inside(folder, run):
        return {"run": relative(folder, run)}
    return {"outside": str(Path(folder).resolve())}


def model_folder(record: Any, run: str | Path, what: str, allow_outside: bool = False) -> Path:
    """The folder a ``model_record`` (or an older record's bare path) names, by the rules in the module docstring."""
    if isinstance(record, dict) and "run" in record:
        return inside(run, record["run"], what)
    if isinstance(record, dict) and "weights" in record:
        from hoiforge.models.weights import registry as weights

        return weights.resolve(str(record["weights"]))
    outside = record.get("outside") if isinstance(record, dict) else record
    if not isinstance(outside, str) or not outside:
        raise RunPathError(f"{what} is not a model record (run, weights or outside)")
    if Path(outside).is_absolute() and is_inside(outside, run):
        return Path(outside)
    if not allow_outside:
        raise RunPathError(
            f"{what} names {outside!r}, a folder outside the run {run}: a received run could point anywhere, so only models "
            f"inside it or weights-registry entries load; pass {ALLOW_FLAG} if this run is yours"
        )
    return Path(outside)
