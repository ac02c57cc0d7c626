"""On-disk cache of a real set's Inception features, keyed by content.

Key = sha256 over: the sorted sha256 of every listed file's bytes (readable or not, so the same
files give the same key wherever they live and whatever they are named), the extractor (named by
its weights' sha256), the 299 resize and the evaluation resolution. A second evaluation against
the same real set reads the features (one ``.npz``) instead of running Inception again;
changing one byte of one image, the network or a setting computes them afresh.

Location: ``cache_dir``, else ``$HOIFORGE_CACHE/eval-features``, else ``~/.cache/hoiforge/eval-features``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hoiforge.metrics.features import Features, extract_folder, settings_of
from hoiforge.metrics.image_folder import ImageFolder, list_images
from hoiforge.metrics.inception import InceptionV3Features
from hoiforge.models.weights.digest import sha256_of

CACHE_ENV = "HOIFORGE_CACHE"


def default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path("~/.cache/hoiforge").expanduser()) / "eval-features"


def content_key(listing: ImageFolder, extractor: InceptionV3Features) -> str:
    digests = sorted(sha256_of(listing.root / rel) for rel in listing.files)
    s = settings_of(extractor)
    doc = {"files": digests, "extractor": s.extractor, "resize": s.resize, "resolution": s.resolution}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def cached_folder_features(
    folder: str | Path,
    extractor: InceptionV3Features,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
    label: str = "real features",
) -> tuple[Features, bool]:
    """(features of ``folder``, whether they came from the cache)."""
    listing = list_images(folder)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = cache / f"{content_key(listing, extractor)}.npz"
    if path.is_file():
        try:
            features = Features.load(path)
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
            path.unlink(missing_ok=True)
        else:
            features.source = str(listing.root)
            return features, True
    features = extract_folder(listing, extractor, batch_size=batch_size, progress=progress, label=label)
    features.save(path)
    return features, False
