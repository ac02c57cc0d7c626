"""Decode full vs reduced (JPEG draft mode): what a stage that needs <= N px saves per image.

The bundled photos (tests/data) saved as JPEGs at 1x, 2x and 4x their size (512..2560 px), each
decoded to RGB in full (``decode_rgb(data)``) and reduced (``decode_rgb(data, N)``, Pillow's
draft mode: DCT scaling by 1/2, 1/4 or 1/8, to the smallest size whose longer side is still
>= N). N = 640 is the mediapipe person detector's ``input_size``, 384 the template captioner's.

    python bench/decode_draft.py --size 640

The last line is full / reduced decode time over all images (higher is better).
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

from PIL import Image

from hoiforge.datasets.images import decode_rgb

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
PHOTOS = ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg")


def jpegs() -> list[tuple[str, bytes]]:
    out = []
    for name in PHOTOS:
        img = Image.open(DATA / name).convert("RGB")
        for scale in (1, 2, 4):
            buf = io.BytesIO()
            img.resize((img.width * scale, img.height * scale), Image.LANCZOS).save(buf, "JPEG", quality=92)
            out.append((f"{name} x{scale} ({img.width * scale}x{img.height * scale})", buf.getvalue()))
    return out


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)  # the least disturbed run: the machine is shared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=640, help="longer side the stage needs")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    total_full = total_reduced = 0.0
    for label, data in jpegs():
        full = best_of(lambda d=data: decode_rgb(d), args.repeat)
        reduced = best_of(lambda d=data: decode_rgb(d, args.size), args.repeat)
        shape = decode_rgb(data, args.size).shape
        total_full += full
        total_reduced += reduced
        print(
            f"{label:34s} full {1000 * full:7.2f} ms   reduced to {shape[1]}x{shape[0]} {1000 * reduced:7.2f} ms   {full / reduced:5.2f}x"
        )
    print(f"all: full {1000 * total_full:.1f} ms, reduced (>= {args.size} px) {1000 * total_reduced:.1f} ms")
    print(f"decode full / reduced: {total_full / total_reduced:.2f}x")


if __name__ == "__main__":
    main()
