"""Inception feature extraction, images per second at batch 64 vs batch 1 (the FID/KID feature path).

Times ``extract_images`` (short-side resize to the evaluation resolution, TF1 resize to 299,
the TorchScript InceptionV3 forward) on real photos already decoded in memory, so decoding and
disk are not in the figure. Prints the ratio batch-64 / batch-1 throughput as the last line.

    PYTHONPATH=src python bench/inception_batch.py                 # CPU: 128 images per setting
    PYTHONPATH=src python bench/inception_batch.py --device cuda --images 1024
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
PHOTOS = ["astronaut.png", "coffee.png", "basketball1.png", "scenetext01.jpg"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=128, help="images per setting")
    ap.add_argument("--batch", type=int, nargs=2, default=[64, 1], metavar=("LARGE", "SMALL"))
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    import torch

    from hoiforge.metrics.features import extract_images
    from hoiforge.metrics.inception import InceptionV3Features

    photos = [np.asarray(Image.open(DATA / n).convert("RGB")) for n in PHOTOS]
    images = [(str(i), photos[i % len(photos)]) for i in range(args.images)]
    extractor = InceptionV3Features(resolution=args.resolution, device=args.device)
    print(f"device {extractor.device}, torch threads {torch.get_num_threads()}, {args.images} images at short side {args.resolution}")
    extract_images(images[: min(8, len(images))], extractor, batch_size=min(8, args.batch[0]))  # warm-up (TorchScript profiling runs)

    rates = {}
    for batch in args.batch:
        if extractor.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        values, _ = extract_images(images, extractor, batch_size=batch)
        if extractor.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rates[batch] = len(values) / seconds
        print(f"batch {batch:>3}: {rates[batch]:7.2f} images/s ({seconds:.1f} s for {len(values)})")
    large, small = args.batch
    print(f"batch {large} vs batch {small}: {rates[large] / rates[small]:.2f}x images/s")


if __name__ == "__main__":
    main()
