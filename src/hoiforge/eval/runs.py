"""What ``eval virtualmodel`` and ``eval shoemodel`` share: which kind of run a folder is, the report folder, progress.

A VirtualModel run (``hoiforge train virtualmodel --out RUN``) holds ``config.yaml``; a ShoeModel
run (``hoiforge train shoemodel --out RUN``) holds ``wd/ lps1/ lps2/ sw/``, each with its
``shoemodel.json`` record. Either command given the other kind, or a folder that is neither,
says so in one line before any model loads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hoiforge.errors import EvalError

T = TypeVar("T")
SHOEMODEL_MODULES = ("wd", "lps1", "lps2", "sw")


def run_kind(run: Path) -> str | None:
    """ "virtualmodel", "shoemodel" or None."""
    if (run / "config.yaml").is_file() or (run.parent.name == "checkpoints" and (run.parent.parent / "config.yaml").is_file()):
        return "virtualmodel"
    if any((run / m / "shoemodel.json").is_file() for m in SHOEMODEL_MODULES):
        return "shoemodel"
    return None


def check_run(run: str | Path, want: str) -> Path:
    """``run`` as a Path when it is a ``want`` run; EvalError in one sentence otherwise."""
    path = Path(run).expanduser()
    train = f"`hoiforge train {want} ... --out RUN`"
    if not path.is_dir():
        raise EvalError(f"--checkpoint {path} does not exist; pass the --out folder of {train}")
    kind = run_kind(path)
    if kind is None:
        raise EvalError(
            f"--checkpoint {path} is not a trained run (no config.yaml, no wd/ lps1/ lps2/ sw/); pass the --out folder of {train}"
        )
    if kind != want:
        names = {"virtualmodel": "VirtualModel", "shoemodel": "ShoeModel"}
        raise EvalError(f"--checkpoint {path} is a {names[kind]} run, not a {names[want]} one; evaluate it with `hoiforge eval {kind}`")
    return path


def prepare_report(report: str | Path) -> Path:
    """The report folder, created; EvalError if it cannot be."""
    path = Path(report).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise EvalError(f"--out {path} cannot be written ({e.strerror or e})") from None
    return path


def settings_match(folder: Path, settings: dict) -> bool:
    """Whether ``folder`` holds images generated with exactly ``settings`` (its ``generation.json``)."""
    f = folder / "generation.json"
    try:
        return json.loads(f.read_text()) == json.loads(json.dumps(settings))
    except (OSError, ValueError):
        return False


def generation_folder(folder: Path, settings: dict) -> None:
    """Make ``folder`` hold images of ``settings`` only: images made with other settings are removed (a
    rerun keeps what matches and fills the rest), and ``generation.json`` records the settings."""
    if folder.is_dir() and not settings_match(folder, settings):
        for old in folder.glob("*.png"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generation.json").write_text(json.dumps(settings, indent=2))


def tracked(items: Iterable[T], total: int, description: str, enabled: bool, weight: Callable[[T], int] | None = None) -> Iterator[T]:
    """``items`` with a rich progress bar on stderr; each item advances it by ``weight(item)`` (1 by default)."""
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task, weight(item) if weight else 1)


@contextmanager
def timed(into: dict, key: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        into[key] = round(time.perf_counter() - start, 3)


def finite(v):
    """``v`` with NaN/inf floats as None, recursively (JSON has no NaN)."""
    import math

    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    return v


def table_markdown(table: str, rows: list, compare: bool, notes: list[str]) -> str:
    """The markdown ``tables.write_table`` writes for these rows and notes (printed on stdout too)."""
    from dataclasses import replace

    from hoiforge.eval.tables import markdown, spec_of

    spec = spec_of(table)
    return markdown(replace(spec, notes=(*spec.notes, *notes)), rows, compare)
