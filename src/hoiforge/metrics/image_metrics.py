"""FID, KID and CLIP score of a folder of generated images against a real set: what ``eval metrics`` runs.

The real set is a folder (its features are cached by content, feature_cache.py) or a features
``.npz`` written by an earlier run; the generated set is a folder. Both are brought to the same
evaluation resolution; features computed under different settings are refused. Every number
goes out with its N and resolution (``ImageMetrics.summary_lines``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from hoiforge.errors import EvalError
from hoiforge.metrics.clip_score import ClipScorer, ClipScoreResult, clip_score
from hoiforge.metrics.features import Features, FeatureSettings, check_same_settings, extract_folder, settings_of
from hoiforge.metrics.fid import MIN_IMAGES, fid
from hoiforge.metrics.image_folder import iter_images, list_images, skipped_line
from hoiforge.metrics.kid import KID, NUM_SUBSETS, SUBSET_SIZE, kid


@dataclass
class ImageMetrics:
    fid: float
    kid: KID
    n_real: int
    n_fake: int
    settings: FeatureSettings
    clip: ClipScoreResult | None = None
    real_from_cache: bool = False
    real_features_path: str | None = None
    warnings: list[str] = field(default_factory=list)  # one line each: skipped files, KID subset size

    def to_json(self) -> dict:
        doc = {
            "fid": self.fid,
            "kid": self.kid.mean,
            "kid_std": self.kid.std,
            "kid_x1k": self.kid.x1000,
            "kid_subset_size": self.kid.subset_size,
            "kid_subsets": self.kid.num_subsets,
            "n_real": self.n_real,
            "n_fake": self.n_fake,
            "resolution": self.settings.resolution,
            "resize": self.settings.resize,
            "extractor": self.settings.extractor,
        }
        if self.clip is not None:
            doc.update(
                clip=self.clip.score,
                clip_n=self.clip.n,
                clip_truncated=self.clip.n_truncated,
                clip_truncation=self.clip.truncation,
                clip_model=self.clip.model,
            )
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in doc.items()}

    def summary_lines(self) -> list[str]:
        where = f"N real {self.n_real}, N fake {self.n_fake}, {self.settings.describe()}"
        lines = [
            f"FID      {self.fid:.3f}   ({where})",
            f"KID×1k   {self.kid.x1000:.3f} ± {1000 * self.kid.std:.3f}   "
            f"({self.kid.num_subsets} subsets of {self.kid.subset_size}; {where})",
        ]
        if self.clip is not None:
            lines.append(
                f"CLIP     {self.clip.score:.3f}   (N {self.clip.n}, {self.clip.n_truncated} caption(s) over 77 tokens truncated "
                f"[{self.clip.truncation}], {self.clip.model})"
            )
        return lines


def _check_count(n: int, total: int, source: str) -> None:
    if n < MIN_IMAGES:
        unreadable = f" ({total - n} unreadable)" if total > n else ""
        raise EvalError(f"{source}: {n} readable image(s){unreadable}; FID and KID need at least {MIN_IMAGES}")


def real_features(
    real: str | Path, extractor, cache: bool, cache_dir, batch_size: int, progress: bool
) -> tuple[Features, bool, str | None]:
    """(features of the real set, from cache?, cache or features path)."""
    from hoiforge.metrics.feature_cache import cached_folder_features, content_key, default_cache_dir

    path = Path(real).expanduser()
    if path.is_file() and path.suffix == ".npz":
        return Features.load(path), True, str(path)
    listing = list_images(path)
    _check_count(len(listing.files), len(listing.files), str(path))
    if not cache:
        return extract_folder(listing, extractor, batch_size, progress, "real features"), False, None
    features, hit = cached_folder_features(path, extractor, cache_dir, batch_size, progress)
    where = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / f"{content_key(listing, extractor)}.npz"
    return features, hit, str(where)


def image_metrics(
    real: str | Path,
    fake: str | Path,
    captions: dict[str, str] | None = None,
    resolution: int | None = 512,
    resize: str = "tf1-bilinear",
    batch_size: int = 64,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    clip_model: str | Path | None = None,
    clip_truncation: str = "torchmetrics",
    fid_method: str = "sqrtm",
    kid_subsets: int = NUM_SUBSETS,
    kid_subset_size: int = SUBSET_SIZE,
    device: str | None = None,
    progress: bool = True,
) -> ImageMetrics:
    from hoiforge.metrics.captions import match_captions
    from hoiforge.metrics.inception import InceptionV3Features

    fake_listing = list_images(fake)
    _check_count(len(fake_listing.files), len(fake_listing.files), str(fake_listing.root))
    real_path = Path(real).expanduser()
    if not (real_path.is_dir() or (real_path.is_file() and real_path.suffix == ".npz")):
        raise EvalError(f"{real_path}: --real is a folder of images or a features .npz from an earlier run")
    scorer = ClipScorer(clip_model, device=device, truncation=clip_truncation) if captions is not None else None  # weights first

    extractor = InceptionV3Features(resolution=resolution, resize=resize, device=device)
    real_f, hit, real_path_used = real_features(real_path, extractor, cache, cache_dir, batch_size, progress)
    if real_f.settings != settings_of(extractor):  # a features file from another run: refuse before any work
        check_same_settings(real_f, Features(real_f.values[:0], [], settings_of(extractor), str(fake_listing.root)))
    fake_f = extract_folder(fake_listing, extractor, batch_size, progress, "fake features")
    notes = [line for f in (real_f, fake_f) if (line := skipped_line(f.source, f.total_files, f.skipped))]
    _check_count(real_f.n, real_f.total_files, real_f.source)
    _check_count(fake_f.n, fake_f.total_files, fake_f.source)

    fid_value = fid(real_f, fake_f, method=fid_method)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kid_value = kid(real_f, fake_f, num_subsets=kid_subsets, subset_size=kid_subset_size)
    notes += [str(w.message) for w in caught]

    clip = None
    if scorer is not None:
        names = fake_f.names
        ordered = match_captions(captions, names, str(fake_listing.root))
        wanted = set(names)
        images = (rgb for name, rgb in iter_images(fake_listing) if name in wanted)
        clip = clip_score(zip(images, ordered, strict=True), scorer)
    return ImageMetrics(fid_value, kid_value, real_f.n, fake_f.n, fake_f.settings, clip, hit, real_path_used, notes)
