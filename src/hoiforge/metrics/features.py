"""Inception features of a set of images, with the settings they were computed under.

``Features`` carries the (N, 2048) array and the settings (extractor, 299 resize, evaluation
resolution); FID/KID refuse to compare features whose settings differ. ``extract_folder``
streams a folder through the extractor in batches (decode, preprocess, forward, keep only the
2048 floats), so memory is one batch of images plus N x 2048 floats. Features are saved as
``.npz`` (no pickle).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hoiforge.errors import EvalError, InputError
from hoiforge.metrics.image_folder import ImageFolder, iter_images, list_images
from hoiforge.metrics.inception import FEATURE_DIM, InceptionV3Features


@dataclass(frozen=True)
class FeatureSettings:
    extractor: str
    resize: str
    resolution: int | None  # short side before the 299 resize; None = the images' own size

    def describe(self) -> str:
        res = f"short side {self.resolution} px" if self.resolution else "native size"
        return f"{res}, {self.resize} to 299"


@dataclass
class Features:
    values: np.ndarray  # (N, 2048) float32
    names: list[str]  # the image each row came from
    settings: FeatureSettings
    source: str = ""  # the folder (or file) they came from
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable files: (name, reason)
    total_files: int = 0

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz) atomically: a reader never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "extractor": self.settings.extractor,
            "resize": self.settings.resize,
            "resolution": self.settings.resolution,
            "source": self.source,
            "skipped": self.skipped,
            "total_files": self.total_files,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, values=self.values.astype(np.float32), names=np.array(self.names, dtype=np.str_), meta=np.array(json.dumps(meta)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Features:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                values, names, meta = z["values"], [str(n) for n in z["names"]], json.loads(str(z["meta"]))
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"{path}: not a features file written by hoiforge eval ({e})") from None
        if values.ndim != 2 or values.shape[1] != FEATURE_DIM:
            raise InputError(f"{path}: features of shape {values.shape}, expected (N, {FEATURE_DIM})")
        settings = FeatureSettings(meta["extractor"], meta["resize"], meta["resolution"])
        skipped = [tuple(s) for s in meta.get("skipped", [])]
        return cls(values, names, settings, meta.get("source", str(path)), skipped, meta.get("total_files", len(names)))


def settings_of(extractor: InceptionV3Features) -> FeatureSettings:
    return FeatureSettings(extractor.extractor_id, extractor.resize, extractor.resolution)


def check_same_settings(a: Features, b: Features) -> None:
    """EvalError when two feature sets were computed differently (FID between them would be meaningless)."""
    if a.settings != b.settings:
        raise EvalError(
            f"features were computed with different settings: {a.source or 'first set'} at {a.settings.describe()} "
            f"({a.settings.extractor}), {b.source or 'second set'} at {b.settings.describe()} ({b.settings.extractor}); "
            f"compute both with the same --resolution and extractor"
        )


def extract_images(
    images: Iterable[tuple[str, np.ndarray]],
    extractor: InceptionV3Features,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Features of (name, RGB) pairs, streamed through the extractor ``batch_size`` at a time."""
    import torch

    chunks, names, batch = [], [], []

    def flush() -> None:
        chunks.append(extractor.features(torch.stack(batch)))
        if on_batch:
            on_batch(len(batch))
        batch.clear()

    for name, rgb in images:
        batch.append(extractor.preprocess(rgb))
        names.append(name)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    values = np.concatenate(chunks) if chunks else np.zeros((0, FEATURE_DIM), np.float32)
    return values, names


def extract_folder(
    folder: str | Path | ImageFolder,
    extractor: InceptionV3Features,
    batch_size: int = 64,
    progress: bool = True,
    label: str = "features",
) -> Features:
    """Features of every readable image under ``folder`` (unreadable ones recorded in ``skipped``)."""
    listing = folder if isinstance(folder, ImageFolder) else list_images(folder)
    with _progress(progress, label, len(listing.files)) as advance:
        values, names = extract_images(iter_images(listing), extractor, batch_size, on_batch=advance)
    return Features(values, names, settings_of(extractor), str(listing.root), list(listing.skipped), len(listing.files))


class _progress:
    """A rich progress bar on stderr (stdout stays clean for --json), or nothing."""

    def __init__(self, enabled: bool, label: str, total: int):
        self.enabled, self.label, self.total = enabled, label, total

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True)
        )
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._bar.stop()
