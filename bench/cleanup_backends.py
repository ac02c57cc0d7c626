"""Per-image time of the cleanup stage's parts (OCR, each embedded inpainter) on the test overlays.

Run: python bench/cleanup_backends.py [--out /tmp/cleanup_bench]
Writes before/after PNGs per backend to --out so the fills can be looked at.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from overlays import DATA, sale_overlay

from hoiforge.models.inpaint import PatchMatchInpainter, TeleaInpainter
from hoiforge.models.ocr import RapidOCRReader
from hoiforge.stages.cleanup import TextPolicy, decide, removal_mask


def timed(fn, repeat: int = 3):
    fn()  # warm-up (onnxruntime session, first allocation)
    started = time.perf_counter()
    for _ in range(repeat):
        result = fn()
    return result, (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/cleanup_bench")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "astronaut_sale": np.asarray(sale_overlay("astronaut.png")),
        "coffee_sale": np.asarray(sale_overlay("coffee.png")),
        "scenetext01": np.asarray(Image.open(DATA / "scenetext01.jpg").convert("RGB")),
    }
    reader = RapidOCRReader()
    backends = [TeleaInpainter(), PatchMatchInpainter()]
    for name, rgb in images.items():
        regions, ocr_s = timed(lambda rgb=rgb: reader.read([rgb])[0])
        removed = [r.polygon for r in regions if decide(r, rgb.shape[:2], TextPolicy(), [], None)[0] == "removed"]
        mask = removal_mask(removed, rgb.shape[:2], 4, 0.2)
        Image.fromarray(rgb).save(out / f"{name}_before.png")
        line = [
            f"{name} {rgb.shape[1]}x{rgb.shape[0]}: ocr {ocr_s * 1000:.0f} ms ({len(regions)} regions, mask {100 * (mask > 0).mean():.1f}%)"
        ]
        for backend in backends:
            (filled,), fill_s = timed(lambda b=backend, rgb=rgb, mask=mask: b.inpaint([rgb], [mask]))
            Image.fromarray(filled).save(out / f"{name}_{backend.name}.png")
            line.append(f"{backend.name} {fill_s * 1000:.0f} ms")
        print("; ".join(line))


if __name__ == "__main__":
    main()
