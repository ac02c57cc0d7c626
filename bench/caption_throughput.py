"""Captions per second through the caption stage (template, and Qwen2-VL with random weights built from config).

Random weights generate meaningless text, but the work per caption (vision tower, prefill, decode
of max_new_tokens) is the real model's, so this measures the batching throughput of the code path.

    python bench/caption_throughput.py --size tiny --images 32 --batch 1 8 --max-new-tokens 32
    python bench/caption_throughput.py --size 2b --images 64 --batch 1 16 32 --max-new-tokens 128   # on a GPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.random_qwen2_vl builds the random model
DATA = ROOT / "tests" / "data"
PHOTOS = ["astronaut.png", "coffee.png", "basketball1.png", "scenetext01.jpg"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=["tiny", "2b"], default="tiny")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    args = ap.parse_args()

    import torch

    from hoiforge.pipeline.adapter import run_stage
    from hoiforge.stages.caption import Caption
    from hoiforge.stages.testing import decoded
    from tests.random_qwen2_vl import write_random_qwen2_vl

    samples = [decoded(DATA / PHOTOS[i % len(PHOTOS)], i) for i in range(args.images)]
    template = Caption(Caption.Params(stage="caption"))
    started = time.perf_counter()
    run_stage(template, samples)
    print(f"template: {args.images / (time.perf_counter() - started):.1f} captions/s")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_random_qwen2_vl(tmp, size=args.size)
        options = {"model": str(model_dir), "device": args.device, "dtype": args.dtype}
        for batch in args.batch:
            stage = Caption(
                Caption.Params(
                    stage="caption", captioner={"backend": "qwen2-vl", "options": {**options, "max_new_tokens": args.max_new_tokens}}
                )
            )
            stage.setup()
            stage._ready = True
            # min_new_tokens = max: every caption decodes the full budget, so runs compare like for like.
            stage.captioner.generate_kwargs["min_new_tokens"] = args.max_new_tokens
            run_stage(stage, samples[:batch])  # warm-up
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            started = time.perf_counter()
            for i in range(0, args.images, batch):
                run_stage(stage, samples[i : i + batch])
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
            print(
                f"qwen2-vl {args.size} on {stage.captioner.device} {stage.captioner.dtype}: batch {batch}: "
                f"{args.images / elapsed:.2f} captions/s ({args.max_new_tokens} new tokens each)"
            )


if __name__ == "__main__":
    main()
