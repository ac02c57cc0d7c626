"""CPU time of ``eval metrics`` per 1k images: features (decode, resize, Inception) per image, plus FID and KID at N = 1000.

Feature time is measured on ``--images`` real photos (crops of the fixtures written as PNG, the
way a generated set lies on disk) and scaled to 1000; FID (sqrtm and eigh) and KID (100 subsets
of 1000) are timed at their real size on 1000 x 2048 features. The last line is the estimate
for one real + one generated set of 1000 images each, without and with the real set cached.

    PYTHONPATH=src python bench/eval_time.py --images 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
PHOTOS = ["astronaut.png", "coffee.png", "basketball1.png", "scenetext01.jpg"]


def write_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    photos = [np.asarray(Image.open(DATA / p).convert("RGB")) for p in PHOTOS]
    for i in range(n):
        rgb = photos[i % len(photos)]
        h, w = rgb.shape[:2]
        y, x = int(rng.integers(0, h // 4)), int(rng.integers(0, w // 4))
        Image.fromarray(np.ascontiguousarray(rgb[y : y + 3 * h // 4, x : x + 3 * w // 4])).save(folder / f"{i:05d}.png")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=512)
    args = ap.parse_args()

    import torch

    from hoiforge.metrics.features import extract_folder
    from hoiforge.metrics.fid import fid
    from hoiforge.metrics.inception import InceptionV3Features
    from hoiforge.metrics.kid import kid

    extractor = InceptionV3Features(resolution=args.resolution, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_images(folder, args.images)
        extract_folder(folder, extractor, batch_size=8, progress=False)  # warm-up
        feats, seconds = timed(lambda: extract_folder(folder, extractor, batch_size=64, progress=False))
    per_image = seconds / feats.n
    print(f"torch threads {torch.get_num_threads()}; features: {feats.n} images in {seconds:.1f} s = {per_image * 1000:.0f} ms/image")

    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(0.3, 0.3, size=(1000, 2048))).astype(np.float32)
    b = np.abs(rng.normal(0.32, 0.3, size=(1000, 2048))).astype(np.float32)
    _, t_sqrtm = timed(lambda: fid(a, b, method="sqrtm"))
    _, t_eigh = timed(lambda: fid(a, b, method="eigh"))
    _, t_kid = timed(lambda: kid(a, b))
    print(f"N = 1000: FID sqrtm {t_sqrtm:.1f} s, FID eigh {t_eigh:.1f} s, KID (100 x 1000) {t_kid:.1f} s")
    both = 2000 * per_image + t_sqrtm + t_kid
    cached = 1000 * per_image + t_sqrtm + t_kid
    print(f"per 1k real + 1k generated images on CPU: {both / 60:.1f} min ({cached / 60:.1f} min with the real set cached), FID by sqrtm")


if __name__ == "__main__":
    main()
